// What-if: replays a past period under other waveless policies (POST /v1/whatif) and shows
// the KPIs side by side, and WIP per service over time when the answer carries it.

import { api } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { clear, errorBox, fmtNum, h, json } from "../dom.js";

const KPIS = [["completed", "Completed"], ["throughput_per_hour", "Throughput / h"], ["lead_time_p50_s", "Lead time p50 (s)"],
  ["lead_time_p95_s", "Lead time p95 (s)"], ["missed_cutoffs", "Missed cut-offs"], ["compensated", "Compensated"]];
const EXAMPLE = [{ name: "bigger-batches", batch_size: 25, interval_ms: 2000, wip_caps: {}, ageing_ms: 60000 },
  { name: "capped-picking", batch_size: 10, interval_ms: 1000, wip_caps: { "warehouse-service": 5 }, ageing_ms: 60000 }];

function local(d) {
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// WIP per service: {service: [{t (s from the window's start), in_flight}, ...]}.
function wipLines(wip) {
  if (!wip || typeof wip !== "object") return [];
  return Object.entries(wip).filter(([, points]) => Array.isArray(points)).map(([name, points]) => ({
    name, points: points.map((p) => [Number(p.t) * 1000, Number(p.in_flight ?? p.wip ?? p.n ?? 0)]),
  }));
}

function elapsed(ms) {
  const m = Math.floor(ms / 60000);
  return m >= 60 ? `+${Math.floor(m / 60)} h ${m % 60} min` : `+${m} min`;
}

function nameOf(policy) {
  return policy && typeof policy === "object" ? policy.name : policy;
}

export async function render(view) {
  const now = new Date();
  const form = h("form", { class: "card col", "data-testid": "whatif-form" },
    h("div", { class: "row" },
      h("label", {}, "From", h("input", { name: "from", type: "datetime-local", required: true, value: local(new Date(now - 3600e3)) })),
      h("label", {}, "To", h("input", { name: "to", type: "datetime-local", required: true, value: local(now) })),
      h("label", {}, "Seed", h("input", { name: "seed", type: "number", value: 1 }))),
    h("label", {}, "Policies (JSON list: name, batch_size, interval_ms, wip_caps, ageing_ms)",
      h("textarea", { name: "policies", rows: 8 }, JSON.stringify(EXAMPLE, null, 2))),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Run what-if")));
  const out = h("div", { "data-testid": "whatif-result" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "What-if")),
    h("p", { class: "muted" }, "Replays the arrivals of a past period through the engine's rules under other waveless policies, calibrated against what really happened."),
    form, out);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    let policies;
    try {
      policies = JSON.parse(data.get("policies"));
    } catch (e) {
      clear(out, errorBox(`Policies are not JSON: ${e.message}`));
      return;
    }
    clear(out, h("p", { class: "muted" }, "Running…"));
    try {
      const body = { from: new Date(data.get("from")).toISOString(), to: new Date(data.get("to")).toISOString(), policies, seed: Number(data.get("seed")) };
      const r = await api("/v1/whatif", { method: "POST", body });
      const columns = [["actual", r.actual],
        ...(r.calibration ? [[`calibration (${nameOf(r.calibration.policy)})`, r.calibration.kpis]] : []),
        ...r.results.map((x) => [nameOf(x.policy), x.kpis])];
      const keys = [...KPIS, ...Object.keys(r.actual || {}).filter((k) => !KPIS.some(([known]) => known === k)).map((k) => [k, k])];
      const wip = [["actual", wipLines(r.actual_wip)],
        ...(r.calibration ? [[`calibration (${nameOf(r.calibration.policy)})`, wipLines(r.calibration.wip)]] : []),
        ...r.results.map((x) => [nameOf(x.policy), wipLines(x.wip)])].filter(([, lines]) => lines.length);
      clear(out,
        r.calibration ? h("p", { "data-testid": "calibration" }, "Calibration ", r.calibration.within_tolerance ? h("span", { class: "ok" }, "within tolerance") : h("span", { class: "error" }, "outside tolerance")) : null,
        h("table", { class: "grid", "data-testid": "kpi-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "KPI"), columns.map(([n]) => h("th", {}, n)))),
          h("tbody", {}, keys.map(([key, name]) => h("tr", { "data-kpi": key }, h("td", {}, name), columns.map(([, k]) => h("td", {}, fmtNum(k ? k[key] : null))))))),
        h("div", { class: "charts" }, KPIS.map(([key, name]) => barChart({ title: name, width: 520, height: 180, series: [name], bins: columns.map(([n, k]) => ({ label: String(n).slice(0, 18), values: [k && k[key] ? k[key] : 0] })) }))),
        wip.length ? h("div", { class: "charts" }, wip.map(([name, lines]) => lineChart({ title: `WIP per service over time: ${name}`, lines, xFormat: elapsed })))
          : h("p", { class: "muted" }, "The answer has no WIP series per service."),
        h("details", {}, h("summary", {}, "Raw answer"), json(r)));
    } catch (e) {
      clear(out, errorBox(e));
    }
  });
}
