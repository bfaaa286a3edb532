// Throughput: workflows completed and compensated per minute or hour, the compensation
// rate, late work (from the audit read model), and steps in flight per service (the load
// read model, sampled while the page is open).

import { allPages, api } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { clear, errorBox, h } from "../dom.js";

const WINDOWS = { "last hour, per minute": [3600e3, 60e3], "last 6 hours, per 10 minutes": [6 * 3600e3, 600e3], "last 24 hours, per hour": [24 * 3600e3, 3600e3] };

function bins(rows, from, width, count) {
  const out = new Array(count).fill(0);
  for (const r of rows) {
    const i = Math.floor((new Date(r.timestamp).getTime() - from) / width);
    if (i >= 0 && i < count) out[i] += 1;
  }
  return out;
}

function label(t, width) {
  const d = new Date(t);
  return width >= 3600e3 ? `${String(d.getHours()).padStart(2, "0")}h` : d.toLocaleTimeString(undefined, { hour12: false, hour: "2-digit", minute: "2-digit" });
}

export async function render(view, { params }) {
  const choice = params.get("window") && WINDOWS[params.get("window")] ? params.get("window") : Object.keys(WINDOWS)[0];
  const picker = h("select", { "aria-label": "window" }, Object.keys(WINDOWS).map((k) => h("option", { selected: k === choice }, k)));
  picker.addEventListener("change", () => { location.hash = `#/throughput?window=${encodeURIComponent(picker.value)}`; });
  const kpis = h("div", { class: "kpis", "data-testid": "kpis" });
  const charts = h("div", { class: "charts", "data-testid": "charts" });
  const inflight = h("div", { class: "charts" });
  const note = h("p", { class: "muted" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "Throughput"), picker), kpis, charts, inflight, note);
  const samples = new Map(); // service -> [[t, in flight]]

  async function load() {
    const [span, width] = WINDOWS[choice];
    const now = Date.now();
    const count = Math.ceil(span / width);
    const from = Math.floor((now - span) / width) * width + width;
    const after = new Date(from).toISOString();
    try {
      const [completed, compensated, late, failed] = await Promise.all(["Completed", "CompensationCompleted", "MarkedLate", "Failed"].map(
        (t) => allPages("/v1/audit", { event_type: t, after, limit: 500 }, 40)));
      const times = Array.from({ length: count }, (_, i) => from + i * width);
      const c = bins(completed.items, from, width, count);
      const k = bins(compensated.items, from, width, count);
      const l = bins(late.items, from, width, count);
      // Only minutes in which something finished have a rate.
      const rate = c.map((n, i) => (n + k[i] ? (100 * k[i]) / (n + k[i]) : null));
      const total = completed.items.length + compensated.items.length;
      clear(kpis,
        h("div", { class: "kpi", "data-kpi": "completed" }, "Completed", h("b", {}, completed.items.length)),
        h("div", { class: "kpi", "data-kpi": "compensated" }, "Compensated", h("b", {}, compensated.items.length)),
        h("div", { class: "kpi", "data-kpi": "failed" }, "Failed", h("b", {}, failed.items.length)),
        h("div", { class: "kpi", "data-kpi": "compensation-rate" }, "Compensation rate", h("b", {}, total ? `${((100 * compensated.items.length) / total).toFixed(1)} %` : "—")),
        h("div", { class: "kpi", "data-kpi": "late" }, "Marked late", h("b", {}, late.items.length)));
      clear(charts,
        barChart({ title: "Workflows completed and compensated", series: ["completed", "compensated"], bins: times.map((t, i) => ({ label: label(t, width), values: [c[i], k[i]] })) }),
        lineChart({ title: "Compensation rate (%)", lines: [{ name: "compensated / finished", points: times.map((t, i) => [t, rate[i]]).filter((_, i) => c[i] + k[i] > 0) }],
          xDomain: [from, from + (count - 1) * width], xFormat: (x) => label(x, width) }),
        barChart({ title: "Late work (MarkedLate)", series: ["marked late"], bins: times.map((t, i) => ({ label: label(t, width), values: [l[i]] })) }));
      const partial = [completed, compensated, late, failed].some((x) => !x.complete);
      note.textContent = `From the audit read model since ${new Date(from).toLocaleString()}${partial ? " (capped: more events than shown)" : ""}.`;
    } catch (e) {
      clear(charts, errorBox(e));
    }
  }

  async function sample() {
    try {
      const { items } = await api("/v1/load");
      const t = Date.now();
      const per = new Map();
      for (const r of items) per.set(r.service, (per.get(r.service) || 0) + r.in_flight);
      for (const [service, n] of per) {
        const points = samples.get(service) || [];
        points.push([t, n]);
        if (points.length > 360) points.shift();
        samples.set(service, points);
      }
      clear(inflight, lineChart({ title: "Steps in flight per service (sampled every 5 s while this page is open)",
        lines: [...samples.entries()].map(([name, points]) => ({ name, points })) }),
      barChart({ title: "Steps in flight per service now", series: ["in flight"], bins: [...per.entries()].map(([s, n]) => ({ label: s, values: [n] })) }));
    } catch (e) {
      clear(inflight, errorBox(e));
    }
  }

  await Promise.all([load(), sample()]);
  const timers = [setInterval(load, 30000), setInterval(sample, 5000)];
  return () => timers.forEach(clearInterval);
}
