// Load: per service and instance the load score, health, circuit, target share, latency,
// error rate, in flight and queued; the recent rebalancing decisions; manual rebalancing.

import { api, recentEvents } from "../api.js";
import { barChart } from "../charts.js";
import { badge, clear, errorBox, fmtMs, fmtNum, fmtTime, h } from "../dom.js";
import { actionButton } from "../session.js";

function pct(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)} %`;
}

export async function render(view) {
  const answer = h("div", { class: "answer", "data-testid": "answer", role: "status" });
  const tables = h("div");
  const charts = h("div", { class: "charts" });
  const decisions = h("div", { class: "card", "data-testid": "decisions" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "Load"),
    actionButton("Rebalance now", "operator", rebalance, { class: "primary", "data-action": "rebalance" })),
  answer, charts, tables, decisions);

  async function rebalance() {
    try {
      const r = await api("/v1/load/rebalance", { method: "POST" });
      clear(answer, h("div", { class: "ok" }, `Rebalanced (position ${r.position ?? "—"}): `,
        r.decisions.map((d) => `${d.service} → ${Object.entries(d.target_shares).map(([i, s]) => `${i} ${pct(s)}`).join(", ")}`).join("; ") || "no service"));
    } catch (e) {
      clear(answer, errorBox(e));
    }
    load();
  }

  async function load() {
    try {
      const [{ items }, rebalanced] = await Promise.all([
        api("/v1/load"), recentEvents({ event_type: "SystemLoadRebalanced" }, 10000)]);
      const services = [...new Set(items.map((r) => r.service))];
      clear(tables, services.map((service) => h("div", { class: "card", "data-service": service },
        h("h2", {}, service),
        h("table", { class: "grid compact" },
          h("thead", {}, h("tr", {}, ["Instance", "Load score", "Health", "Circuit", "Target share", "Avg", "p95", "Error rate", "In flight", "Queued", "Completed", "Failed"].map((c) => h("th", {}, c)))),
          h("tbody", {}, items.filter((r) => r.service === service).map((r) => h("tr", { "data-instance": r.instance },
            h("td", { class: "mono" }, r.instance), h("td", {}, fmtNum(r.load_score, 1)),
            h("td", {}, r.health ? badge(r.health) : h("span", { class: "muted", title: "no LoadMetrics reported (POST /v1/load/metrics)" }, "not reported")),
            h("td", {}, badge(r.circuit_state || "—")), h("td", {}, pct(r.target_share)),
            h("td", {}, fmtMs(r.avg_duration_ms)), h("td", {}, fmtMs(r.p95_duration_ms)), h("td", {}, pct(r.error_rate)),
            h("td", {}, r.in_flight), h("td", {}, r.queued), h("td", {}, r.completed), h("td", {}, r.failed))))))));
      clear(charts,
        barChart({ title: "Load score per instance", series: ["load score"], bins: items.map((r) => ({ label: r.instance.split("/").pop() || r.instance, values: [r.load_score || 0] })) }),
        barChart({ title: "In flight and queued per instance", series: ["in flight", "queued"], bins: items.map((r) => ({ label: r.instance.split("/").pop() || r.instance, values: [r.in_flight, r.queued] })) }));
      const recent = rebalanced.slice(-20).reverse();
      clear(decisions, h("h2", {}, "Rebalancing decisions"), recent.length ? h("table", { class: "grid compact" },
        h("thead", {}, h("tr", {}, ["Time", "Service", "Target shares", "Reason", "By"].map((c) => h("th", {}, c)))),
        h("tbody", {}, recent.map((e) => h("tr", {},
          h("td", {}, fmtTime(e.timestamp)), h("td", {}, e.data.service_name),
          h("td", { class: "small" }, Object.entries(e.data.target_shares || {}).map(([i, s]) => `${i}: ${pct(s)}`).join(", ")),
          h("td", {}, e.data.reason), h("td", {}, e.data.actor))))) : h("p", { class: "muted" }, "No rebalancing recorded recently."));
    } catch (e) {
      clear(tables, errorBox(e));
    }
  }

  await load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
