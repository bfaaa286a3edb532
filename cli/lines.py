"""Terminal lines for events: one line each, full timestamps, whole words only."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

ELLIPSIS = "…"
# Fields every event carries or that only a machine reads: left to `--json`.
_SKIPPED = frozenset({"correlation_id", "originator_id", "originator_version", "timestamp",
                      "step_id", "input_data", "steps", "input", "deadline", "due_at"})


def width(default: int = 80) -> int:
    """The terminal's width (COLUMNS wins, as in every Unix tool); 80 when unknown."""
    return shutil.get_terminal_size((default, 24)).columns


def stamp(value: datetime | str) -> str:
    """A full UTC timestamp to the millisecond: `2026-12-01T21:42:58.123Z`."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def fit(words: list[str], room: int) -> str:
    """As many whole words as fit in `room` characters, so no word is ever cut; ` …` marks
    the ones left out when there is room for it (a word that fits beats the mark)."""
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if len(candidate) > room:
            marked = f"{line} {ELLIPSIS}" if line else ELLIPSIS
            return marked if len(marked) <= room else line
        line = candidate
    return line


def summary(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The words that say what an event did, most telling first."""
    words: list[str] = []
    step = data.get("step_id")
    if step:
        words.append(str(step))
    error = data.get("error")
    if isinstance(error, Mapping):
        words.append(str(error.get("code") or "error"))
        if error.get("recoverable") is not None:
            words.append("recoverable" if error["recoverable"] else "unrecoverable")
    if event_type == "Created":
        words += [f"{data.get('definition_id')}@v{data.get('definition_version')}",
                  str(data.get("priority", "")), f"by={data.get('triggered_by')}"]
    elif event_type == "StepRetryScheduled":
        words += [f"retry={data.get('retry_number')}", f"in={data.get('delay_ms')}ms"]
    elif event_type == "StepExecuted":
        words.append(f"{data.get('execution_time_ms')}ms")
    elif event_type == "CompensationStarted":
        undo = [str(s) for s in data.get("step_ids") or []]
        words += ["undo:", *[f"{s}," for s in undo[:-1]], *undo[-1:]] if undo else [
            "nothing to undo"]
    words += [f"{k}={_scalar(v)}" for k, v in data.items()
              if k not in _SKIPPED and k not in _SHOWN.get(event_type, ()) and k != "error"
              and _scalar(v) is not None]
    if isinstance(error, Mapping) and error.get("message"):
        words += str(error["message"]).split()
    return [w for w in words if w]


_SHOWN: dict[str, tuple[str, ...]] = {
    "Created": ("definition_id", "definition_version", "priority", "triggered_by", "name"),
    "StepRetryScheduled": ("retry_number", "delay_ms"),
    "StepExecuted": ("execution_time_ms", "output"),
    "CompensationStarted": ("step_ids",),
}


def _scalar(value: Any) -> str | None:
    """A short value as one word; None for empty, nested or multi-word ones (see --json)."""
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if " " not in text and len(text) <= 40 else None


def event_line(version: int, timestamp: datetime | str, event_type: str,
               data: Mapping[str, Any], *, room: int, type_width: int,
               version_width: int = 2, mark: str = " ") -> str:
    """`  3 2026-12-01T21:42:58.123Z StepFailed   pick-items ITEM_NOT_FOUND …` in `room`."""
    head = f"{mark}{version:>{version_width}} {stamp(timestamp)} {event_type:<{type_width}} "
    return (head + fit(summary(event_type, data), room - len(head))).rstrip()
