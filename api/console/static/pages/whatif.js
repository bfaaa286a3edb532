// What-if: replays a recorded window through one or two other release policies
// (POST /v1/whatif) and shows, side by side, what actually happened, the calibration (the
// policy that ran, simulated, checked against what happened) and each policy's KPIs, then
// WIP per service over time as one chart per service.

import { api } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { clear, fmtNum, h, json } from "../dom.js";

// The KPIs the answer carries (docs/http-api.md "What-if"), in the order shown.
const KPIS = [["arrived", "Arrived"], ["completed", "Completed"], ["throughput_per_hour", "Throughput / h"],
  ["lead_time_p50_s", "Lead time p50 (s)"], ["lead_time_p95_s", "Lead time p95 (s)"],
  ["missed_cutoffs", "Missed cut-offs"], ["compensated", "Compensated"], ["compensation_rate", "Compensation rate"],
  ["release_wait_p50_s", "Release wait p50 (s)"], ["release_wait_p95_s", "Release wait p95 (s)"],
  ["unfinished", "Unfinished"]];
const CHARTED = ["throughput_per_hour", "lead_time_p50_s", "lead_time_p95_s", "release_wait_p50_s", "missed_cutoffs", "compensated"];
const DEFAULTS = [{ name: "bigger batches", batch_size: 25, interval_ms: 2000, wip_caps: "", ageing_ms: 60000 },
  { name: "pick capped at 5", batch_size: "", interval_ms: "", wip_caps: "warehouse-service=5", ageing_ms: "" }];

// A datetime-local value (local time, to the millisecond) for a Date.
function local(d) {
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
}

function elapsed(ms) {
  const s = ms / 1000;
  if (s < 120) return `+${Math.round(s * 10) / 10} s`;
  const m = Math.floor(s / 60);
  return m >= 60 ? `+${Math.floor(m / 60)} h ${m % 60} min` : `+${m} min`;
}

function policyFields(i, d) {
  const p = `p${i}`;
  return h("fieldset", { class: "card col", "data-testid": `policy-${i}` },
    h("legend", {}, i === 1 ? "Policy 1" : h("label", { style: "flex-direction: row; align-items: center; gap: 4px" },
      h("input", { type: "checkbox", name: `${p}.on`, checked: true, "data-testid": "policy-2-on" }), "Policy 2 (compare two)")),
    h("div", { class: "row" },
      h("label", {}, "Name", h("input", { name: `${p}.name`, value: d.name, required: true, maxlength: 200 })),
      h("label", {}, "Batch size (empty: recorded lanes)", h("input", { name: `${p}.batch_size`, type: "number", min: 1, value: d.batch_size })),
      h("label", {}, "Interval (ms)", h("input", { name: `${p}.interval_ms`, type: "number", min: 1, value: d.interval_ms })),
      h("label", {}, "Ageing (ms, empty: as ran)", h("input", { name: `${p}.ageing_ms`, type: "number", min: 0, value: d.ageing_ms })),
      h("label", {}, "Cut-off urgency (ms, 0: off)", h("input", { name: `${p}.cutoff_urgency_ms`, type: "number", min: 0, value: d.cutoff_urgency_ms ?? "" })),
      h("label", {}, "Adaptive", h("input", { name: `${p}.adaptive`, type: "checkbox", checked: true }))),
    h("label", {}, "WIP caps (service=cap, comma-separated; empty: as ran)",
      h("input", { name: `${p}.wip_caps`, value: d.wip_caps, size: 60, placeholder: "warehouse-service=12, packing-service=8" })));
}

// The policy the form's fields say, leaving out what is empty (the API keeps what ran).
function policyOf(form, i) {
  const get = (k) => form.elements[`p${i}.${k}`];
  const policy = { name: get("name").value.trim(), adaptive: get("adaptive").checked };
  for (const k of ["batch_size", "interval_ms", "ageing_ms", "cutoff_urgency_ms"]) if (get(k).value !== "") policy[k] = Number(get(k).value);
  const caps = get("wip_caps").value.trim();
  if (caps) {
    policy.wip_caps = {};
    for (const part of caps.split(",").map((x) => x.trim()).filter(Boolean)) {
      const [service, cap] = part.split("=").map((x) => x.trim());
      if (!service || !/^\d+$/.test(cap || "")) throw new Error(`WIP caps of policy ${i}: "${part}" is not service=cap`);
      policy.wip_caps[service] = Number(cap);
    }
  }
  return policy;
}

function describe(policy) {
  const parts = [];
  parts.push(policy.batch_size ? `batch ${policy.batch_size} per ${policy.interval_ms ?? "recorded"} ms` : "recorded lanes");
  const caps = Object.entries(policy.wip_caps || {});
  parts.push(caps.length ? `caps ${caps.map(([s, n]) => `${s}=${n}`).join(", ")}` : "no caps");
  if (policy.ageing_ms !== null && policy.ageing_ms !== undefined) parts.push(`ageing ${policy.ageing_ms} ms`);
  if (policy.cutoff_urgency_ms) parts.push(`cut-off urgency ${policy.cutoff_urgency_ms} ms`);
  return parts.join(" · ");
}

// The answer's problem detail (RFC 9457), as the API said it.
function problemBox(e) {
  const p = (e && e.problem) || {};
  const fields = (p.errors || []).map((x) => `${(x.loc || []).join(".")}: ${x.msg}`);
  return h("div", { class: "error", role: "alert", "data-testid": "problem", "data-status": e && e.status ? e.status : null },
    e && e.status ? h("strong", {}, `${e.status} ${p.title || ""}`) : null,
    h("div", { "data-testid": "problem-detail" }, p.detail || (e && e.message) || String(e)),
    p.field ? h("div", { class: "small" }, `field: ${p.field}`) : null,
    fields.length ? h("ul", { class: "small" }, fields.map((f) => h("li", {}, f))) : null);
}

function calibrationCard(c) {
  const t = c.tolerance || {};
  const ok = Boolean(c.within_tolerance);
  const rule = `a KPI agrees within ±${Math.round((t.relative ?? 0) * 100)} % of what happened, or within ${t.absolute_seconds} s (times) / ${t.absolute_count} workflows (counts) when that is more`;
  return h("div", { class: "card", "data-testid": "calibration", "data-ok": String(ok), style: `border-left: 6px solid var(${ok ? "--ok" : "--bad"})` },
    h("h2", {}, "Calibration: ", h("span", { class: `badge ${ok ? "s-completed" : "s-failed"}`, "data-testid": "calibration-verdict" },
      ok ? "within tolerance" : "OFF — outside tolerance")),
    ok ? h("p", {}, `The policy that ran (${describe(c.policy)}), simulated, reproduces what actually happened.`)
      : h("p", { class: "error", "data-testid": "calibration-off" },
        `Calibration is off: the policy that ran (${describe(c.policy)}), simulated, does not reproduce what actually happened. `
        + "Read the policies' predictions with care."),
    h("p", { "data-testid": "tolerance" }, h("strong", {}, "Tolerance: "), `${rule}.`),
    h("table", { class: "grid compact", "data-testid": "calibration-checks" },
      h("thead", {}, h("tr", {}, ["KPI", "Actual", "Simulated", "Allowed ±", ""].map((x) => h("th", {}, x)))),
      h("tbody", {}, Object.entries(c.checks || {}).map(([k, x]) => h("tr", { "data-kpi": k, "data-ok": String(x.ok) },
        h("td", {}, (KPIS.find(([key]) => key === k) || [k, k])[1]), h("td", {}, fmtNum(x.actual)), h("td", {}, fmtNum(x.simulated)),
        h("td", {}, fmtNum(x.allowed)), h("td", {}, x.ok ? h("span", { class: "ok" }, "ok") : h("span", { class: "badge s-failed" }, "off")))))));
}

// One chart per service: a line per run (actual, calibration, each policy).
function wipCharts(runs) {
  const services = [...new Set(runs.flatMap(([, wip]) => Object.keys(wip || {})))].sort();
  if (!services.length) return h("p", { class: "muted" }, "The answer has no WIP series.");
  return h("div", { class: "charts", "data-testid": "wip-charts" }, services.map((service) => {
    const lines = runs.map(([name, wip]) => ({ name, points: ((wip || {})[service] || []).map((p) => [Number(p.t) * 1000, Number(p.in_flight)]) }));
    const chart = lineChart({ title: `WIP over time: ${service}`, lines, width: 640, height: 200, xFormat: elapsed });
    chart.dataset.testid = "wip-chart";
    chart.dataset.service = service;
    return chart;
  }));
}

function report(r) {
  const columns = [["actual", "What happened", r.actual], ["calibration", `Calibration (${r.calibration.policy.name})`, r.calibration.kpis],
    ...r.results.map((x, i) => [`policy-${i + 1}`, x.policy.name, x.kpis])];
  const known = new Set(KPIS.map(([k]) => k));
  const keys = [...KPIS, ...Object.keys(r.actual).filter((k) => !known.has(k)).map((k) => [k, k])];
  const o = r.observed || {};
  return [
    calibrationCard(r.calibration),
    h("div", { class: "card" }, h("h2", {}, "KPIs side by side"),
      h("table", { class: "grid", "data-testid": "kpi-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "KPI"), columns.map(([id, n]) => h("th", { "data-run": id }, n)))),
        h("tbody", {}, keys.map(([key, name]) => h("tr", { "data-kpi": key }, h("td", {}, name),
          columns.map(([id, , k]) => h("td", { "data-run": id }, fmtNum(k[key]))))))),
      h("p", { class: "muted small" }, r.results.map((x) => `${x.policy.name}: ${describe(x.policy)}, ${x.replications} replication(s)`).join("; "),
        ` — from ${o.workflows ?? "?"} workflows (${o.waveless ?? "?"} waveless), seed ${r.seed}, ${fmtNum(r.run && r.run.total_seconds, 3)} s.`)),
    h("div", { class: "charts", "data-testid": "kpi-charts" }, CHARTED.map((key) => {
      const name = KPIS.find(([k]) => k === key)[1];
      // One bin, a bar per run: each run keeps its colour and the legend names it.
      return barChart({ title: name, width: 560, height: 200,
        series: columns.map(([id, n], i) => (i < 2 ? id : String(n).slice(0, 18))),
        bins: [{ label: "", values: columns.map(([, , k]) => Number(k[key]) || 0) }] });
    })),
    h("h2", {}, "WIP per service over time"),
    wipCharts([["actual", r.actual_wip], ["calibration", r.calibration.wip], ...r.results.map((x) => [x.policy.name, x.wip])]),
    h("details", {}, h("summary", {}, "Observed services and the raw answer"), json(r)),
  ];
}

export async function render(view) {
  const now = new Date();
  const form = h("form", { class: "col", "data-testid": "whatif-form" },
    h("div", { class: "card row" },
      h("label", {}, "From (workflows created from…)", h("input", { name: "from", type: "datetime-local", step: "0.001", required: true, value: local(new Date(now - 3600e3)) })),
      h("label", {}, "To (…until, exclusive)", h("input", { name: "to", type: "datetime-local", step: "0.001", required: true, value: local(now) })),
      h("label", {}, "Seed", h("input", { name: "seed", type: "number", min: 0, value: 1 }))),
    policyFields(1, DEFAULTS[0]), policyFields(2, DEFAULTS[1]),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", "data-action": "run" }, "Run what-if")));
  const out = h("div", { "data-testid": "whatif-result" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "What-if")),
    h("p", { class: "muted" }, "Replays the arrivals of a recorded window through the engine's own rules under one or two other release policies, "
      + "beside what actually happened and the simulation of the policy that ran (its calibration)."),
    form, out);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      const policies = [policyOf(form, 1)];
      if (form.elements["p2.on"].checked) policies.push(policyOf(form, 2));
      body = { from: new Date(form.elements.from.value).toISOString(), to: new Date(form.elements.to.value).toISOString(),
        policies, seed: Number(form.elements.seed.value || 0) };
    } catch (e) {
      clear(out, problemBox(e));
      return;
    }
    clear(out, h("p", { class: "muted", "data-testid": "running" }, "Running…"));
    try {
      clear(out, report(await api("/v1/whatif", { method: "POST", body })));
    } catch (e) {
      clear(out, problemBox(e));
    }
  });
}
