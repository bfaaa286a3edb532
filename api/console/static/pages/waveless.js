// Waveless: the lanes (batch size, interval) seen in recent batches, what waits and why
// (`waiting_reason` of PENDING waveless workflows), and the recent batches.

import { allPages, recentEvents } from "../api.js";
import { clear, errorBox, fmtMs, fmtNum, fmtTime, h, shortId } from "../dom.js";

export async function render(view) {
  const body = h("div");
  clear(view, h("div", { class: "title" }, h("h1", {}, "Waveless")), body);

  async function load() {
    try {
      const [pending, batches] = await Promise.all([
        allPages("/v1/workflows", { status: "PENDING", sort: "priority", order: "asc", limit: 500 }, 4),
        recentEvents({ event_type: "WavelessBatch.Released" }, 20000)]);
      const waiting = pending.items.filter((r) => r.waveless);
      const lanes = new Map();
      for (const b of batches) {
        const key = `${b.data.batch_size} per ${b.data.interval_ms} ms`;
        const lane = lanes.get(key) || { key, batches: 0, released: 0, last: null };
        lane.batches += 1;
        lane.released += (b.data.members || []).length;
        lane.last = b.timestamp;
        lanes.set(key, lane);
      }
      const reasons = new Map();
      for (const w of waiting) reasons.set(w.waiting_reason || "waiting for the next batch", (reasons.get(w.waiting_reason || "waiting for the next batch") || 0) + 1);
      const now = Date.now();
      clear(body,
        h("div", { class: "card", "data-testid": "lanes" }, h("h2", {}, "Lanes"), lanes.size ? h("table", { class: "grid compact" },
          h("thead", {}, h("tr", {}, ["Lane (batch size, interval)", "Batches", "Released", "Last batch"].map((c) => h("th", {}, c)))),
          h("tbody", {}, [...lanes.values()].map((l) => h("tr", {}, h("td", {}, l.key), h("td", {}, l.batches), h("td", {}, l.released), h("td", {}, fmtTime(l.last))))))
          : h("p", { class: "muted" }, "No batch released recently.")),
        h("div", { class: "card", "data-testid": "waiting" }, h("h2", {}, `Waiting (${waiting.length})`),
          h("p", {}, [...reasons.entries()].map(([r, n]) => h("span", { class: "badge" }, `${r}: ${n}`))),
          waiting.length ? h("table", { class: "grid compact" },
            h("thead", {}, h("tr", {}, ["Workflow", "Priority", "Definition", "Waiting reason", "Waiting for"].map((c) => h("th", {}, c)))),
            h("tbody", {}, waiting.map((w) => h("tr", { "data-id": w.id }, h("td", {}, h("a", { href: `#/workflow/${w.id}` }, shortId(w.id))),
              h("td", {}, w.priority), h("td", {}, w.definition), h("td", {}, w.waiting_reason || "—"), h("td", {}, fmtMs(now - new Date(w.created_at).getTime()))))))
            : h("p", { class: "muted" }, "Nothing waits.")),
        h("div", { class: "card", "data-testid": "batches" }, h("h2", {}, "Recent batches"), batches.length ? h("table", { class: "grid compact" },
          h("thead", {}, h("tr", {}, ["Released", "Batch", "Members", "Candidates", "Batch size", "Interval", "Load score"].map((c) => h("th", {}, c)))),
          h("tbody", {}, batches.slice(-30).reverse().map((b) => h("tr", {}, h("td", {}, fmtTime(b.timestamp)), h("td", { class: "mono" }, shortId(b.aggregate_id)),
            h("td", {}, (b.data.members || []).map((m) => h("a", { href: `#/workflow/${m}`, class: "mono" }, `${shortId(m)} `))),
            h("td", {}, b.data.candidates), h("td", {}, b.data.batch_size), h("td", {}, fmtMs(b.data.interval_ms)), h("td", {}, fmtNum(b.data.load_score, 1))))))
          : h("p", { class: "muted" }, "None.")));
    } catch (e) {
      clear(body, errorBox(e));
    }
  }

  await load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
