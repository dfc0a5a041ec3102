// The dashboard's entry: routes /dashboard/ and /dashboard/instances/<id>, signs in, refreshes.

import { api, getToken, setToken } from "./api.js";
import { listView } from "./list.js";
import { instanceView } from "./instance.js";
import { h, clear } from "./util.js";

const main = document.getElementById("main");
const refreshToggle = document.getElementById("refresh-toggle");
const signOut = document.getElementById("sign-out");
const flashBox = document.getElementById("flash");
const REFRESH_KEY = "dapr-workflows.auto-refresh";
const REFRESH_MS = 4000;

let current = null; // the view on screen: { refresh(), destroy() }
let timer = null;
let signingIn = false;

function autoRefresh() {
  return sessionStorage.getItem(REFRESH_KEY) !== "off";
}

function showRefreshState() {
  const on = autoRefresh();
  refreshToggle.setAttribute("aria-pressed", String(on));
  refreshToggle.textContent = on ? "Auto-refresh on" : "Auto-refresh paused";
  refreshToggle.title = on ? "Pause auto-refresh" : "Resume auto-refresh";
}

refreshToggle.addEventListener("click", () => {
  sessionStorage.setItem(REFRESH_KEY, autoRefresh() ? "off" : "on");
  showRefreshState();
  schedule();
});

function schedule() {
  clearTimeout(timer);
  if (!autoRefresh() || !current?.refresh) return;
  timer = setTimeout(async () => {
    // A hidden tab asks nothing of the server.
    if (!document.hidden && current?.refresh) {
      try {
        await current.refresh();
      } catch {
        // The view shows its own errors; the next tick tries again.
      }
    }
    schedule();
  }, REFRESH_MS);
}

export function flash(message) {
  flashBox.textContent = message;
  flashBox.classList.add("shown");
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => flashBox.classList.remove("shown"), 5000);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

function route() {
  current?.destroy?.();
  current = null;
  signingIn = false;
  signOut.hidden = !getToken();
  const path = location.pathname;
  const instance = path.match(/^\/dashboard\/instances\/(.+)$/);
  const context = { main, navigate, flash };
  let instanceID = null;
  try {
    instanceID = instance ? decodeURIComponent(instance[1]) : null;
  } catch {
    instanceID = instance[1]; // not valid percent-encoding: the ID as written
  }
  if (instanceID !== null) {
    current = instanceView(context, instanceID);
  } else if (path === "/dashboard/" || path === "/dashboard") {
    current = listView(context, new URLSearchParams(location.search));
  } else {
    clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/dashboard/" }, "All instances")));
  }
  schedule();
}

function showSignIn(refused) {
  if (signingIn) return;
  signingIn = true;
  current?.destroy?.();
  current = null;
  clearTimeout(timer);
  const input = h("input", {
    id: "token", name: "token", type: "password", required: true, autocomplete: "off", spellcheck: "false",
  });
  const message = h("p", { class: "error", role: "alert", id: "sign-in-error" });
  if (refused) message.textContent = refused;
  const form = h("form", { class: "sign-in card", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "This server asks for its API token (", h("code", {}, "--api-token"), " or ",
      h("code", {}, "DAPR_WORKFLOWS_API_TOKEN"), "). It is kept in this browser tab until you sign out or close it."),
    h("label", { for: "token" }, "API token"),
    input,
    message,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    message.textContent = "";
    try {
      await api.check(token);
    } catch (error) {
      message.textContent = error.status === 401
        ? "The server refused this token. Check it and try again."
        : error.message;
      input.focus();
      input.select();
      return;
    }
    setToken(token);
    route();
  });
  clear(main, form);
  input.focus();
}

window.addEventListener("dashboard:unauthorized", () => {
  const hadToken = Boolean(getToken());
  setToken(null);
  signOut.hidden = true;
  showSignIn(hadToken ? "The server no longer accepts the token of this session; sign in again." : "");
});

signOut.addEventListener("click", () => {
  setToken(null);
  route();
});

// Links inside the dashboard change the view without loading the page again.
document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const target = new URL(link.href, location.href);
  if (target.origin !== location.origin || !target.pathname.startsWith("/dashboard")) return;
  if (target.pathname.startsWith("/dashboard/static/")) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

window.addEventListener("popstate", route);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) schedule();
});

showRefreshState();
route();
