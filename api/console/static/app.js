// The console's shell: who the caller is (GET /v1/whoami), the key dialog, and the pages
// behind the hash routes (#/workflows, #/workflow/<id>, ...).

import { api, apiKey, setApiKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { session } from "./session.js";

const PAGES = {
  workflows: () => import("./pages/workflows.js"),
  workflow: () => import("./pages/workflow.js"),
  incidents: () => import("./pages/incidents.js"),
  load: () => import("./pages/load.js"),
  waveless: () => import("./pages/waveless.js"),
  projections: () => import("./pages/projections.js"),
  throughput: () => import("./pages/throughput.js"),
  whatif: () => import("./pages/whatif.js"),
};

let cleanup = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "workflows";
  const [path, query = ""] = hash.split("?");
  const [page, ...rest] = path.split("/");
  return { page: PAGES[page] ? page : "workflows", arg: rest.join("/"), params: new URLSearchParams(query) };
}

async function show() {
  const { page, arg, params } = route();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === page || (page === "workflow" && a.dataset.page === "workflows"));
  }
  const main = document.getElementById("main");
  clear(main, h("p", { class: "muted" }, "Loading…"));
  try {
    const module = await PAGES[page]();
    const view = h("section", { class: `page page-${page}`, "data-testid": `page-${page}` });
    clear(main, view);
    cleanup = (await module.render(view, { arg, params, session })) || null;
  } catch (e) {
    clear(main, errorBox(e));
  }
}

async function whoami() {
  try {
    const me = await api("/v1/whoami");
    session.role = me.role;
    session.actor = me.actor;
    const who = document.getElementById("who");
    who.textContent = me.keys_required ? `${me.role} · ${me.actor}` : `${me.role} (no API keys: localhost)`;
    who.dataset.role = me.role;
    document.getElementById("signout").hidden = !me.keys_required;
    return true;
  } catch (e) {
    if (e.status === 401) return false;
    throw e;
  }
}

function askForKey(message) {
  const dialog = document.getElementById("login");
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("login-key").focus();
}

async function start() {
  document.getElementById("login-form").addEventListener("submit", async () => {
    setApiKey(document.getElementById("login-key").value.trim());
    document.getElementById("login-key").value = "";
    if (await whoami()) {
      document.getElementById("login").close();
      show();
    } else {
      setApiKey(null);
      askForKey("That key is not valid.");
    }
  });
  document.getElementById("signout").addEventListener("click", () => {
    setApiKey(null);
    location.reload();
  });
  window.addEventListener("wes:unauthorized", () => {
    if (apiKey()) setApiKey(null);
    askForKey("The server asks for an API key.");
  });
  window.addEventListener("hashchange", show);
  if (await whoami()) show();
  else askForKey(null);
}

start().catch((e) => clear(document.getElementById("main"), errorBox(e)));
