// A workflow's timeline, folded from its history (GET /v1/workflows/{id}/history): each
// step attempt with its start, duration, outcome, error and the backoff before the next;
// each compensation attempt in the order it ran (the reverse of completion); and the
// workflow's own milestones (started, paused, failed, retried, ...).

const MILESTONES = {
  Created: "created", Started: "started", Paused: "paused", Resumed: "resumed",
  Cancelled: "cancelled", Failed: "failed", CompensationStarted: "compensation started",
  CompensationCompleted: "compensated", CompensationFailed: "compensation failed",
  CompensationRetried: "compensation retried", Completed: "completed", Retried: "retried",
  WavelessEnabled: "waveless enabled", ReleasedInBatch: "released in batch",
  WaitingReasonChanged: "waiting", MarkedLate: "marked late",
};

function ms(iso) {
  return new Date(iso).getTime();
}

export function buildTimeline(history) {
  const entries = [];
  const open = new Map(); // step_id -> the attempt entry awaiting its outcome
  const openComp = new Map();
  const lastAttempt = new Map(); // step_id -> last attempt entry (for its backoff)
  for (const ev of history) {
    const d = ev.data || {};
    const at = ev.timestamp;
    switch (ev.event_type) {
      case "StepStarted": {
        const entry = { kind: "attempt", step: d.step_id, attempt: d.attempt, start: at, end: null,
          version: ev.version, outcome: "running", instance: d.instance, error: null, backoff_ms: null };
        entries.push(entry);
        open.set(d.step_id, entry);
        lastAttempt.set(d.step_id, entry);
        break;
      }
      case "StepExecuted": {
        const entry = open.get(d.step_id);
        if (entry) {
          entry.outcome = "completed";
          entry.end = at;
          entry.duration_ms = d.execution_time_ms ?? ms(at) - ms(entry.start);
          entry.instance = d.instance || entry.instance;
          entry.endVersion = ev.version;
          open.delete(d.step_id);
        }
        break;
      }
      case "StepFailed": {
        let entry = open.get(d.step_id);
        if (!entry) {
          // A failure before the call could start (e.g. no healthy instance).
          entry = { kind: "attempt", step: d.step_id, attempt: d.attempt, start: at, version: ev.version, backoff_ms: null };
          entries.push(entry);
          lastAttempt.set(d.step_id, entry);
        }
        entry.outcome = "failed";
        entry.end = at;
        entry.duration_ms = d.duration_ms ?? ms(at) - ms(entry.start);
        entry.error = d.error || null;
        entry.endVersion = ev.version;
        open.delete(d.step_id);
        break;
      }
      case "StepRetryScheduled": {
        const entry = lastAttempt.get(d.step_id);
        if (entry) {
          entry.backoff_ms = d.delay_ms;
          entry.due_at = d.due_at;
        }
        break;
      }
      case "StepCompensationStarted": {
        const entry = { kind: "compensation", step: d.step_id, attempt: d.attempt, start: at, end: null,
          version: ev.version, outcome: "running", operation: d.operation, instance: d.instance, error: null };
        entries.push(entry);
        openComp.set(d.step_id, entry);
        break;
      }
      case "StepCompensated": {
        const entry = openComp.get(d.step_id);
        if (entry) {
          entry.outcome = "compensated";
          entry.end = at;
          entry.duration_ms = ms(at) - ms(entry.start);
          entry.endVersion = ev.version;
          openComp.delete(d.step_id);
        } else {
          entries.push({ kind: "compensation", step: d.step_id, attempt: null, start: at, end: at, version: ev.version, outcome: "compensated", duration_ms: 0 });
        }
        break;
      }
      case "StepCompensationFailed": {
        const entry = openComp.get(d.step_id);
        if (entry) {
          entry.outcome = "failed";
          entry.end = at;
          entry.duration_ms = ms(at) - ms(entry.start);
          entry.error = d.error || null;
          entry.retry_at = d.retry_at;
          if (d.retry_at) entry.backoff_ms = ms(d.retry_at) - ms(at);
          entry.endVersion = ev.version;
          openComp.delete(d.step_id);
        }
        break;
      }
      default:
        if (MILESTONES[ev.event_type]) {
          entries.push({ kind: "milestone", event: ev.event_type, label: MILESTONES[ev.event_type], start: at,
            version: ev.version, detail: d.reason || d.waiting_reason || d.batch_id || (d.error && d.error.code) || d.actor || null });
        }
    }
  }
  return entries;
}
