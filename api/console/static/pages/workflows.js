// Workflows: the progress read model with the API's filters, cursor paging, and live
// updates from the event stream (the page reloads the rows it shows as events arrive).

import { api, ApiError, enumOf, stream } from "../api.js";
import { badge, clear, errorBox, fmtTime, h, progressBar, shortId, throttle } from "../dom.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function multi(name, options, chosen) {
  return h("select", { name, multiple: true, size: 4, "aria-label": name },
    options.map((o) => h("option", { value: o, selected: chosen.includes(o) }, o)));
}

function toIso(local) {
  return local ? new Date(local).toISOString() : null;
}

function fromIso(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

export async function render(view, { params }) {
  const filters = {
    status: params.getAll("status"), priority: params.getAll("priority"), type: params.getAll("type"),
    definition: params.get("definition") || "", correlation_id: params.get("correlation_id") || "",
    created_after: params.get("created_after") || "", created_before: params.get("created_before") || "",
    sort: params.get("sort") || "created_at", order: params.get("order") || "desc",
  };
  const [STATUSES, PRIORITIES, TYPES] = await Promise.all(
    ["WorkflowStatus", "WorkflowPriority", "WorkflowType"].map(enumOf));
  const cursors = [null]; // the cursor of each page seen, for "previous"
  let page = 0;
  let latest = 0; // the highest position seen on the stream: read our writes with it

  const form = h("form", { class: "filters", "data-testid": "filters" },
    h("label", {}, "Status", multi("status", STATUSES, filters.status)),
    h("label", {}, "Priority", multi("priority", PRIORITIES, filters.priority)),
    h("label", {}, "Type", multi("type", TYPES, filters.type)),
    h("div", { class: "col" },
      h("label", {}, "Definition", h("input", { name: "definition", value: filters.definition })),
      h("label", {}, "Correlation id", h("input", { name: "correlation_id", value: filters.correlation_id }))),
    h("div", { class: "col" },
      h("label", {}, "Created from", h("input", { name: "created_after", type: "datetime-local", value: fromIso(filters.created_after) })),
      h("label", {}, "Created before", h("input", { name: "created_before", type: "datetime-local", value: fromIso(filters.created_before) }))),
    h("div", { class: "col" },
      h("label", {}, "Sort", h("select", { name: "sort" }, ["created_at", "updated_at", "priority"].map((o) => h("option", { selected: o === filters.sort }, o)))),
      h("label", {}, "Order", h("select", { name: "order" }, ["desc", "asc"].map((o) => h("option", { selected: o === filters.order }, o)))),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Apply"), h("button", { type: "reset" }, "Clear"))));
  const search = h("form", { class: "search" },
    h("input", { name: "q", placeholder: "Find by workflow id or correlation id", "aria-label": "search", "data-testid": "search" }),
    h("button", { type: "submit" }, "Find"));
  const live = h("span", { class: "live", "data-testid": "live" }, "connecting…");
  const message = h("div");
  const body = h("tbody", { "data-testid": "rows" });
  const pager = h("div", { class: "pager" });
  clear(view,
    h("div", { class: "title" }, h("h1", {}, "Workflows"), live),
    search, form, message,
    h("table", { class: "grid list" },
      h("thead", {}, h("tr", {}, ["Workflow", "Definition", "Type", "Priority", "Status", "Current step",
        "Progress", "Retries", "Correlation id", "Created", "Updated"].map((c) => h("th", {}, c)))),
      body),
    pager);

  function query() {
    return { ...filters, created_after: filters.created_after || null, created_before: filters.created_before || null, limit: 25, cursor: cursors[page] };
  }

  function row(w) {
    return h("tr", { "data-id": w.id, "data-status": w.status },
      h("td", {}, h("a", { href: `#/workflow/${w.id}`, title: w.id }, shortId(w.id))),
      h("td", {}, `${w.definition} v${w.definition_version}`),
      h("td", {}, w.type), h("td", {}, w.priority), h("td", {}, badge(w.status), w.late ? h("span", { class: "badge s-late" }, "LATE") : null),
      h("td", {}, w.current_step || "—"),
      h("td", {}, progressBar(w.progress_percent), ` ${w.steps_done}/${w.steps_total}`),
      h("td", {}, w.retries), h("td", { class: "mono", title: w.correlation_id }, w.correlation_id),
      h("td", {}, fmtTime(w.created_at)), h("td", {}, fmtTime(w.updated_at)));
  }

  async function load() {
    try {
      const result = await api("/v1/workflows", { query: { ...query(), min_position: latest || null } });
      clear(message);
      clear(body, result.items.length ? result.items.map(row) : h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No workflows match.")));
      cursors[page + 1] = result.next_cursor;
      clear(pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "← Previous"),
        h("span", { class: "muted" }, ` page ${page + 1} `),
        h("button", { type: "button", disabled: !result.next_cursor, "data-testid": "next-page", onclick: () => { page += 1; load(); } }, "Next →"));
    } catch (e) {
      clear(message, errorBox(e));
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const name of ["status", "priority", "type"]) for (const v of data.getAll(name)) q.append(name, v);
    for (const name of ["definition", "correlation_id", "sort", "order"]) if (data.get(name)) q.set(name, data.get(name));
    for (const name of ["created_after", "created_before"]) if (data.get(name)) q.set(name, toIso(data.get(name)));
    location.hash = `#/workflows?${q}`;
  });
  form.addEventListener("reset", (ev) => {
    ev.preventDefault();
    location.hash = "#/workflows";
  });
  search.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = new FormData(search).get("q").trim();
    if (!q) return;
    if (UUID.test(q)) {
      try {
        await api(`/v1/workflows/${q}`);
        location.hash = `#/workflow/${q}`;
      } catch (e) {
        clear(message, errorBox(e instanceof ApiError && e.status === 404 ? `No workflow ${q}.` : e));
      }
      return;
    }
    location.hash = `#/workflows?correlation_id=${encodeURIComponent(q)}`;
  });

  await load();
  const reload = throttle(load, 500);
  return stream({}, (event) => {
    if (!event.workflow_id) return;
    latest = Math.max(latest, event.position);
    reload();
  }, (state) => { live.textContent = state === "live" ? "● live" : "reconnecting…"; live.dataset.state = state; });
}
