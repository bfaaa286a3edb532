// The console's only way to the server: the public HTTP API, with the key from this
// browser session (sessionStorage) sent as a bearer token, never in a URL.

const KEY = "wes.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    super(detail ? `${status} ${problem.title || ""}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export function url(path, query = {}) {
  const u = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== "" && v !== null && v !== undefined) u.searchParams.append(name, String(v));
    }
  }
  return u;
}

export async function api(path, { method = "GET", query, body } = {}) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url(path, query), init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new CustomEvent("wes:unauthorized"));
    throw new ApiError(res.status, data);
  }
  return data;
}

// Every page of a list (`next_cursor`), up to `maxPages`.
export async function allPages(path, query = {}, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const page = await api(path, { query: { ...query, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) return { items, complete: true };
  }
  return { items, complete: false };
}

// Events of the feed matching `query` among the last `span` positions (the feed pages
// forwards; a filtered page may be short while more follow).
export async function recentEvents(query, span = 20000, maxPages = 40) {
  const first = await api("/v1/events", { query: { limit: 1, after: 0 } });
  let after = Math.max(0, first.head - span);
  const items = [];
  for (let i = 0; i < maxPages; i++) {
    const page = await api("/v1/events", { query: { ...query, after, limit: 500 } });
    items.push(...page.items);
    after = page.next_after;
    if (!page.next_cursor) break;
  }
  return items;
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization header). Calls
// `onEvent(feedItem)` for each event; reconnects with Last-Event-ID, so nothing is missed.
export function stream(query, onEvent, onState = () => {}) {
  const controller = new AbortController();
  let last = null;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const extra = { Accept: "text/event-stream" };
        if (last !== null) extra["Last-Event-ID"] = last;
        const res = await fetch(url("/v1/events/stream", query), {
          headers: headers(extra), signal: controller.signal,
        });
        if (!res.ok) throw new ApiError(res.status, null);
        onState("live");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            const data = [];
            let id = null;
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
              else if (line.startsWith("id:")) id = line.slice(3).trim();
            }
            if (id !== null) last = id;
            if (data.length) onEvent(JSON.parse(data.join("\n")));
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return () => controller.abort();
}

// The values of an enum of the OpenAPI document (the API's own list, not a copy here).
let spec = null;
export async function enumOf(name) {
  spec = spec || api("/openapi.json");
  const doc = await spec;
  return (doc.components.schemas[name] || {}).enum || [];
}
