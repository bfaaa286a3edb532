// Throughput: workflows completed and compensated per minute or hour, the compensation
// rate, late work (counted by the server over the audit read model, `GET /v1/audit/counts`,
// so every event of the window counts), and steps in flight per service (the load read
// model, sampled while the page is open).

import { api } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { clear, errorBox, h } from "../dom.js";

const TYPES = ["Completed", "CompensationCompleted", "MarkedLate", "Failed"];
const WINDOWS = { "last hour, per minute": [3600e3, 60e3], "last 6 hours, per 10 minutes": [6 * 3600e3, 600e3], "last 24 hours, per hour": [24 * 3600e3, 3600e3] };

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
    // The buckets are the server's, aligned to the epoch; the window starts at the first
    // whole bucket inside the span and ends now (the server's default `before`).
    const from = Math.floor((Date.now() - span) / width) * width + width;
    try {
      const answer = await api("/v1/audit/counts", { query: { event_type: TYPES, after: new Date(from).toISOString(), bucket_seconds: width / 1000 } });
      const times = answer.buckets.map((b) => new Date(b.start).getTime());
      const [c, k, l] = ["Completed", "CompensationCompleted", "MarkedLate"].map((t) => answer.buckets.map((b) => b.counts[t]));
      const totals = answer.totals;
      // Only minutes in which something finished have a rate.
      const rate = c.map((n, i) => (n + k[i] ? (100 * k[i]) / (n + k[i]) : null));
      const total = totals.Completed + totals.CompensationCompleted;
      clear(kpis,
        h("div", { class: "kpi", "data-kpi": "completed" }, "Completed", h("b", {}, totals.Completed)),
        h("div", { class: "kpi", "data-kpi": "compensated" }, "Compensated", h("b", {}, totals.CompensationCompleted)),
        h("div", { class: "kpi", "data-kpi": "failed" }, "Failed", h("b", {}, totals.Failed)),
        h("div", { class: "kpi", "data-kpi": "compensation-rate" }, "Compensation rate", h("b", {}, total ? `${((100 * totals.CompensationCompleted) / total).toFixed(1)} %` : "—")),
        h("div", { class: "kpi", "data-kpi": "late" }, "Marked late", h("b", {}, totals.MarkedLate)));
      clear(charts,
        barChart({ title: "Workflows completed and compensated", series: ["completed", "compensated"], bins: times.map((t, i) => ({ label: label(t, width), values: [c[i], k[i]] })) }),
        lineChart({ title: "Compensation rate (%)", lines: [{ name: "compensated / finished", points: times.map((t, i) => [t, rate[i]]).filter((_, i) => c[i] + k[i] > 0) }],
          xDomain: [times[0], times[times.length - 1]], xFormat: (x) => label(x, width) }),
        barChart({ title: "Late work (MarkedLate)", series: ["marked late"], bins: times.map((t, i) => ({ label: label(t, width), values: [l[i]] })) }));
      note.textContent = `From the audit read model since ${new Date(from).toLocaleString()}.`;
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
