// One workflow: its progress row, a timeline of its steps from its events, its audit trail,
// input and outputs, time travel over its versions (/state?version=), and its actions.

import { allPages, api, stream } from "../api.js";
import { gantt } from "../charts.js";
import { badge, clear, debounce, errorBox, fmtMs, fmtTime, h, json, progressBar, throttle } from "../dom.js";
import { actionButton } from "../session.js";
import { buildTimeline } from "../timeline.js";

// Which actions fit which status (the API decides; these only highlight the likely ones).
const FITS = {
  pause: ["EXECUTING"], resume: ["PAUSED"], cancel: ["PENDING", "EXECUTING", "PAUSED"],
  "cancel-compensate": ["EXECUTING", "PAUSED"], retry: ["FAILED", "COMPENSATED", "CANCELLED"],
  "retry-compensation": ["COMPENSATION_FAILED"], waveless: ["PENDING", "EXECUTING"],
};
const ACTIONS = [
  ["pause", "Pause", "pause", {}],
  ["resume", "Resume", "resume", {}],
  ["cancel", "Cancel", "cancel", { compensate: false }],
  ["cancel-compensate", "Cancel and compensate", "cancel", { compensate: true }],
  ["retry", "Retry", "retry", {}],
  ["retry-compensation", "Retry compensation", "compensation/retry", {}],
  ["waveless", "Enable waveless", "waveless", {}],
];

// An ISO time as a datetime-local input's value (local time, to the millisecond).
function localTime(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
}

function errorText(error) {
  if (!error) return "";
  return `${error.code}${error.message ? `: ${error.message}` : ""}${error.recoverable === false ? " (unrecoverable)" : ""}`;
}

function timelineItem(e) {
  if (e.kind === "milestone") {
    return h("li", { class: `tl milestone ev-${e.event}`, "data-kind": "milestone", "data-event": e.event, "data-version": e.version },
      h("span", { class: "when" }, fmtTime(e.start)), h("strong", {}, e.label), e.detail ? h("span", { class: "muted" }, ` — ${e.detail}`) : null);
  }
  const comp = e.kind === "compensation";
  return h("li", {
    class: `tl ${e.kind} o-${e.outcome}`, "data-kind": e.kind, "data-step": e.step,
    "data-attempt": e.attempt ?? "", "data-outcome": e.outcome, "data-version": e.version,
  },
  h("span", { class: "when" }, fmtTime(e.start)),
  h("strong", {}, comp ? `undo ${e.step}` : e.step), ` attempt ${e.attempt ?? "—"} `,
  badge(e.outcome.toUpperCase()),
  h("span", { class: "dur" }, ` ${fmtMs(e.duration_ms)}`),
  e.instance ? h("span", { class: "muted" }, ` on ${e.instance}`) : null,
  e.error ? h("div", { class: "err", "data-testid": "attempt-error" }, errorText(e.error)) : null,
  e.backoff_ms !== null && e.backoff_ms !== undefined
    ? h("div", { class: "backoff", "data-testid": "backoff" }, `backoff ${fmtMs(e.backoff_ms)} before the next attempt`) : null);
}

function spans(entries, endTime) {
  const out = [];
  for (const e of entries) {
    if (e.kind === "milestone") continue;
    const row = e.kind === "compensation" ? `undo ${e.step}` : e.step;
    const start = new Date(e.start).getTime();
    const end = e.end ? new Date(e.end).getTime() : endTime;
    out.push({ row, start, end: Math.max(end, start + 1), kind: e.kind === "compensation" ? `comp-${e.outcome}` : e.outcome,
      label: `${row} attempt ${e.attempt}: ${e.outcome} ${fmtMs(e.duration_ms)}` });
    if (e.backoff_ms) out.push({ row, start: end, end: end + e.backoff_ms, kind: "backoff", label: `backoff ${fmtMs(e.backoff_ms)}` });
  }
  return out;
}

function stepsTable(state) {
  return h("table", { class: "grid compact", "data-testid": "state-steps" },
    h("thead", {}, h("tr", {}, ["Step", "Service", "Status", "Attempts", "Output", "Last error"].map((c) => h("th", {}, c)))),
    h("tbody", {}, state.steps.map((s) => h("tr", { "data-step": s.spec.step_id, "data-status": s.status },
      h("td", {}, s.spec.step_id), h("td", {}, s.spec.service), h("td", {}, badge(s.status)), h("td", {}, s.attempts),
      h("td", {}, s.output ? json(s.output) : "—"), h("td", {}, s.last_error ? errorText(s.last_error) : "—")))));
}

export async function render(view, { arg: id }) {
  const header = h("div", { class: "card" });
  const actions = h("div", { class: "actions", "data-testid": "actions" });
  const answer = h("div", { class: "answer", "data-testid": "answer", role: "status" });
  const timeline = h("div", { class: "card" });
  const travel = h("div", { class: "card", "data-testid": "time-travel" });
  const io = h("div", { class: "card" });
  const audit = h("div", { class: "card" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "Workflow ", h("span", { class: "mono" }, id)), h("a", { href: "#/workflows" }, "← all workflows")),
    header, h("div", { class: "card" }, h("h2", {}, "Actions"), actions, answer), timeline, travel, io, audit);

  let history = [];
  let progress = null;
  let chosen = null; // the version time travel shows; null follows the latest

  async function runAction(key, path, body) {
    clear(answer, h("span", { class: "muted" }, "…"));
    try {
      const done = await api(`/v1/workflows/${id}/${path}`, { method: "POST", body });
      clear(answer, h("span", { class: "ok", "data-outcome": "ok" }, `${key}: accepted (position ${done.position ?? "—"})`));
      await refresh(done.position);
    } catch (e) {
      clear(answer, h("span", { class: "error", "data-outcome": "refused", "data-status": e.status ?? "" }, `${key}: ${e.message}`));
    }
  }

  function drawHeader() {
    const p = progress;
    clear(header,
      h("div", { class: "facts" },
        h("div", {}, h("label", {}, "Status"), h("span", { "data-testid": "status" }, badge(p.status)), p.late ? badge("LATE") : null),
        h("div", {}, h("label", {}, "Definition"), `${p.definition} v${p.definition_version} (${p.type})`),
        h("div", {}, h("label", {}, "Priority"), p.priority),
        h("div", {}, h("label", {}, "Current step"), p.current_step || "—"),
        h("div", {}, h("label", {}, "Progress"), progressBar(p.progress_percent), ` ${p.steps_done}/${p.steps_total}`),
        h("div", {}, h("label", {}, "Retries"), `${p.retries} step, ${p.retry_count} workflow`),
        h("div", {}, h("label", {}, "Correlation id"), h("span", { class: "mono" }, p.correlation_id)),
        h("div", {}, h("label", {}, "Triggered by"), p.triggered_by),
        h("div", {}, h("label", {}, "Created"), fmtTime(p.created_at)),
        h("div", {}, h("label", {}, "Finished"), fmtTime(p.finished_at)),
        p.waiting_reason ? h("div", {}, h("label", {}, "Waiting"), p.waiting_reason) : null,
        // last_error is what explains the present state; last_failure is history (a
        // workflow that completed after a retry has one, and no current error).
        p.last_error ? h("div", { class: "wide" }, h("label", {}, "Current error"), errorText(p.last_error))
          : p.last_failure ? h("div", { class: "wide" }, h("label", {}, "Last failure (resolved)"), errorText(p.last_failure)) : null));
    clear(actions, ACTIONS.map(([key, label, path, body]) => actionButton(label, "operator", () => runAction(key, path, body),
      { class: FITS[key].includes(p.status) ? "fits" : "", "data-action": key })));
  }

  function drawTimeline() {
    const entries = buildTimeline(history);
    const end = history.length ? new Date(history[history.length - 1].timestamp).getTime() : Date.now();
    const stepSpans = spans(entries, end);
    const rows = [...new Set(stepSpans.map((s) => s.row))];
    clear(timeline, h("h2", {}, "Timeline"),
      h("p", { class: "legend" }, h("i", { class: "k completed" }), "completed ", h("i", { class: "k failed" }), "failed ",
        h("i", { class: "k backoff" }), "backoff ", h("i", { class: "k comp-compensated" }), "compensation ", h("i", { class: "k running" }), "running"),
      rows.length ? gantt({ title: "Step attempts over time", rows, spans: stepSpans }) : null,
      h("ol", { class: "timeline", "data-testid": "timeline" }, entries.map(timelineItem)));
  }

  async function drawState() {
    const last = history.length;
    const version = chosen ?? last;
    const ev = history[version - 1];
    const slider = h("input", { type: "range", min: 1, max: last, value: version, "aria-label": "version", "data-testid": "version-slider" });
    const picker = h("select", { "aria-label": "version picker", "data-testid": "version-picker" },
      history.map((e) => h("option", { value: e.version, selected: e.version === version }, `v${e.version} · ${e.event_type} · ${fmtTime(e.timestamp)}`)));
    const out = h("div", { "data-testid": "state" }, h("p", { class: "muted" }, "…"));
    const pick = (v) => { chosen = v >= last ? null : v; drawState(); };
    // As of a moment: the API folds the events up to that time and says which version that is.
    const at = h("input", { type: "datetime-local", step: "0.001", "aria-label": "as of time", "data-testid": "as-of-time" });
    if (ev) at.value = localTime(ev.timestamp);
    const asOf = h("button", { type: "button", onclick: async () => {
      try {
        const state = await api(`/v1/workflows/${id}/state`, { query: { at: new Date(at.value).toISOString() } });
        pick(state.version);
      } catch (e) {
        clear(out, errorBox(e));
      }
    } }, "As of time");
    slider.addEventListener("input", debounce(() => pick(Number(slider.value)), 150));
    picker.addEventListener("change", () => pick(Number(picker.value)));
    clear(travel, h("h2", {}, "Time travel"),
      h("p", { class: "muted" }, "The state folded from the first N events (GET /state?version=N), or from those up to a time (?at=)."),
      h("div", { class: "row" }, slider, picker, h("button", { type: "button", onclick: () => pick(last) }, "Latest"), at, asOf), out);
    for (const li of timeline.querySelectorAll("li[data-version]")) li.classList.toggle("future", Number(li.dataset.version) > version);
    try {
      const state = await api(`/v1/workflows/${id}/state`, { query: { version } });
      clear(out,
        h("p", {}, `As of version ${state.version}`, ev ? ` (${ev.event_type}, ${fmtTime(ev.timestamp)})` : "", ": ",
          h("span", { "data-testid": "state-status" }, badge(state.status)),
          ` ${state.progress_percent.toFixed(0)} % done`, state.compensation_queue.length ? `; compensation queue ${state.compensation_queue.join(" → ")}` : ""),
        stepsTable(state),
        state.errors.length ? h("details", {}, h("summary", {}, `${state.errors.length} error(s)`), state.errors.map((e) => h("div", { class: "err" }, `${e.step_id || ""} ${errorText(e)} at ${fmtTime(e.occurred_at)}`))) : null);
      if (chosen === null) drawIo(state);
    } catch (e) {
      clear(out, errorBox(e));
    }
  }

  function drawIo(state) {
    clear(io, h("h2", {}, "Input and outputs"),
      h("div", { class: "two" },
        h("div", {}, h("h3", {}, "Input"), json(state.input)),
        h("div", {}, h("h3", {}, "Step outputs"), state.steps.filter((s) => s.output || s.compensation_output).map((s) => h("div", {},
          h("h4", {}, s.spec.step_id), s.output ? json(s.output) : null,
          s.compensation_output ? h("div", {}, h("em", {}, "compensation: "), json(s.compensation_output)) : null)))));
  }

  async function drawAudit(position) {
    try {
      const { items } = await allPages(`/v1/workflows/${id}/audit`, { limit: 500, min_position: position ?? null }, 10);
      clear(audit, h("h2", {}, "Audit trail"),
        h("table", { class: "grid compact", "data-testid": "audit" },
          h("thead", {}, h("tr", {}, ["v", "Time", "Event", "Actor", "Step", "Data"].map((c) => h("th", {}, c)))),
          h("tbody", {}, items.map((r) => h("tr", { "data-event": r.event_type },
            h("td", {}, r.version), h("td", {}, fmtTime(r.timestamp)), h("td", {}, r.event_type), h("td", {}, r.actor || "—"),
            h("td", {}, r.step_id || "—"), h("td", { class: "mono small" }, JSON.stringify(r.data).slice(0, 160)))))));
    } catch (e) {
      clear(audit, h("h2", {}, "Audit trail"), errorBox(e));
    }
  }

  async function refresh(position) {
    const [p, hist] = await Promise.all([
      api(`/v1/workflows/${id}`, { query: { min_position: position ?? null } }),
      allPages(`/v1/workflows/${id}/history`, { limit: 500 }, 50),
    ]);
    progress = p;
    history = hist.items;
    drawHeader();
    drawTimeline();
    await Promise.all([drawState(), drawAudit(position)]);
  }

  try {
    await refresh(null);
  } catch (e) {
    clear(header, errorBox(e));
    return null;
  }
  let latest = 0;
  const update = throttle(() => refresh(latest).catch((e) => clear(answer, errorBox(e))), 400);
  return stream({ workflow_id: id, after: history.length ? history[history.length - 1].position : null }, (ev) => {
    latest = Math.max(latest, ev.position);
    update();
  });
}
