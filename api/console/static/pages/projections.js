// Projections: position, head and lag of each read model; blue/green rebuild (admin) with
// its progress.

import { api } from "../api.js";
import { badge, clear, errorBox, fmtNum, h, progressBar } from "../dom.js";
import { actionButton } from "../session.js";

export async function render(view) {
  const body = h("div");
  const answer = h("div", { class: "answer", "data-testid": "answer", role: "status" });
  clear(view, h("div", { class: "title" }, h("h1", {}, "Projections")), answer, body);

  async function rebuild(name) {
    try {
      const r = await api(`/v1/projections/${encodeURIComponent(name)}/rebuild`, { method: "POST" });
      clear(answer, h("span", { class: "ok" }, `${r.name}: ${r.state}`));
    } catch (e) {
      clear(answer, errorBox(e));
    }
    load();
  }

  async function load() {
    try {
      const { items } = await api("/v1/projections");
      clear(body, h("table", { class: "grid", "data-testid": "projections" },
        h("thead", {}, h("tr", {}, ["Projection", "State", "Position", "Head", "Lag (events)", "Lag (s)", "Generation", "Rebuild", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, items.map((p) => {
          const rebuilding = p.state === "rebuilding";
          const done = rebuilding && p.head ? (100 * (p.rebuilding_position || 0)) / p.head : null;
          return h("tr", { "data-name": p.name, "data-state": p.state },
            h("td", {}, p.name), h("td", {}, badge(p.state.split(":")[0])), h("td", {}, p.position ?? "—"), h("td", {}, p.head ?? "—"),
            h("td", {}, p.lag_events), h("td", {}, fmtNum(p.lag_seconds)), h("td", {}, p.generation ?? "—"),
            h("td", {}, rebuilding ? [progressBar(done), ` ${p.rebuilding_position ?? 0} / ${p.head}`] : "—"),
            h("td", {}, p.name === "relay" ? null : actionButton("Rebuild", "admin", () => rebuild(p.name), { disabled: rebuilding, "data-action": "rebuild" })));
        }))));
    } catch (e) {
      clear(body, errorBox(e));
    }
  }

  await load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}
