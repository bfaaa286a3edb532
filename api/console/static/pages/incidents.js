// Incidents: what needs a person — failed compensations, failed workflows, late work, and
// workflows that have not moved for longer than their current step's timeout — with bulk
// retry / cancel for a selection.

import { allPages, api } from "../api.js";
import { badge, clear, errorBox, fmtMs, fmtTime, h, shortId } from "../dom.js";
import { actionButton } from "../session.js";

const DEFAULT_TIMEOUT_MS = 5000;

async function stepTimeouts(rows) {
  const names = [...new Set(rows.map((r) => r.definition))];
  const byName = new Map();
  await Promise.all(names.map(async (name) => {
    try {
      const d = await api(`/v1/definitions/${encodeURIComponent(name)}`);
      byName.set(name, new Map(d.steps.map((s) => [s.step_id, s.timeout_ms])));
    } catch {
      byName.set(name, new Map()); // an inline workflow has no definition
    }
  }));
  return (row) => (byName.get(row.definition) || new Map()).get(row.current_step) ?? DEFAULT_TIMEOUT_MS;
}

export async function render(view) {
  const sections = h("div");
  const result = h("div", { class: "answer", "data-testid": "bulk-answer", role: "status" });
  const selected = new Map(); // id -> progress row
  const bulk = h("div", { class: "row card" }, h("strong", {}, "Selection: "), h("span", { "data-testid": "selected-count" }, "0"),
    actionButton("Retry selected", "operator", () => runBulk("retry", {}), { "data-action": "bulk-retry" }),
    actionButton("Retry compensation of selected", "operator", () => runBulk("compensation/retry", {}), { "data-action": "bulk-retry-compensation" }),
    actionButton("Cancel selected", "operator", () => runBulk("cancel", { compensate: false }), { "data-action": "bulk-cancel" }),
    actionButton("Cancel and compensate selected", "operator", () => runBulk("cancel", { compensate: true }), { "data-action": "bulk-cancel-compensate" }),
    result);
  clear(view, h("div", { class: "title" }, h("h1", {}, "Incidents"), h("button", { type: "button", onclick: () => load() }, "Refresh")), bulk, sections);

  async function runBulk(path, body) {
    const ids = [...selected.keys()];
    if (!ids.length) return clear(result, h("span", { class: "muted" }, "Select workflows first."));
    const outcomes = await Promise.all(ids.map(async (id) => {
      try {
        await api(`/v1/workflows/${id}/${path}`, { method: "POST", body });
        return h("li", { "data-id": id, "data-outcome": "ok" }, `${shortId(id)}: accepted`);
      } catch (e) {
        return h("li", { "data-id": id, "data-outcome": "refused" }, `${shortId(id)}: ${e.message}`);
      }
    }));
    clear(result, h("ul", {}, outcomes));
    selected.clear();
    await load();
  }

  function table(rows, extra = []) {
    if (!rows.length) return h("p", { class: "muted" }, "None.");
    return h("table", { class: "grid compact" },
      h("thead", {}, h("tr", {}, ["", "Workflow", "Definition", "Status", "Step", "Error", "Updated", ...extra.map((x) => x[0])].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => {
        const box = h("input", { type: "checkbox", "aria-label": `select ${r.id}`, "data-id": r.id });
        box.addEventListener("change", () => {
          if (box.checked) selected.set(r.id, r);
          else selected.delete(r.id);
          view.querySelector('[data-testid="selected-count"]').textContent = String(selected.size);
        });
        const err = r.last_error || r.last_failure;
        return h("tr", { "data-id": r.id },
          h("td", {}, box), h("td", {}, h("a", { href: `#/workflow/${r.id}` }, shortId(r.id))),
          h("td", {}, r.definition), h("td", {}, badge(r.status)), h("td", {}, r.current_step || "—"),
          h("td", { class: "small" }, err ? `${err.code}: ${err.message || ""}` : "—"), h("td", {}, fmtTime(r.updated_at)),
          ...extra.map((x) => h("td", {}, x[1](r))));
      })));
  }

  async function load() {
    clear(sections, h("p", { class: "muted" }, "Loading…"));
    view.querySelector('[data-testid="selected-count"]').textContent = "0";
    selected.clear();
    try {
      const [compFailed, failed, executing, late] = await Promise.all([
        allPages("/v1/workflows", { status: "COMPENSATION_FAILED", limit: 200 }, 5),
        allPages("/v1/workflows", { status: "FAILED", limit: 200 }, 5),
        allPages("/v1/workflows", { status: "EXECUTING", sort: "updated_at", order: "asc", limit: 200 }, 1),
        api("/v1/audit", { query: { event_type: "MarkedLate", order: "desc", limit: 100 } }),
      ]);
      const lateIds = [...new Set(late.items.map((r) => r.workflow_id))].slice(0, 50);
      const lateRows = (await Promise.all(lateIds.map((id) => api(`/v1/workflows/${id}`).catch(() => null)))).filter(Boolean);
      const lateAt = new Map(late.items.map((r) => [r.workflow_id, r.timestamp]));
      const timeout = await stepTimeouts(executing.items);
      const now = Date.now();
      const stuck = executing.items.filter((r) => now - new Date(r.updated_at).getTime() > timeout(r));
      const section = (name, id, rows, extra) => h("div", { class: "card", "data-testid": id },
        h("h2", {}, `${name} (${rows.length})`), table(rows, extra));
      clear(sections,
        section("Compensation failed", "compensation-failed", compFailed.items),
        section("Failed", "failed", failed.items),
        section("Late (MarkedLate)", "late", lateRows, [["Marked late", (r) => fmtTime(lateAt.get(r.id))]]),
        section("Not moved for longer than the step timeout", "stuck", stuck,
          [["Idle", (r) => fmtMs(now - new Date(r.updated_at).getTime())], ["Step timeout", (r) => fmtMs(timeout(r))]]));
    } catch (e) {
      clear(sections, errorBox(e));
    }
  }

  await load();
  const timer = setInterval(() => { if (!selected.size) load(); }, 10000);
  return () => clearInterval(timer);
}
