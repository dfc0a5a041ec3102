// Every request of the dashboard: the documented HTTP API, with the API token of this browser session.

const TOKEN_KEY = "dapr-workflows.api-token";
const meta = document.querySelector('meta[name="dapr-workflows-component"]');
export const component = meta?.content || "dapr";
const base = `/v1.0/workflows/${encodeURIComponent(component)}`;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function url(path, query) {
  const target = new URL(base + path, location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) target.searchParams.append(key, String(one));
  }
  return target;
}

// `body` is sent as given when it is a string (JSON the user typed), else as JSON.
export async function call(method, path, { query, body, token = getToken() } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers["dapr-api-token"] = token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch {
    throw new ApiError(0, "NETWORK", "The server cannot be reached; check that dapr-workflows serve is running.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = typeof data?.message === "string" && data.message
      ? data.message
      : `The server answered ${response.status} ${response.statusText}.`;
    const error = new ApiError(response.status, data?.errorCode ?? "", message);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("dashboard:unauthorized", { detail: error }));
    throw error;
  }
  return data;
}

const one = (id) => `/${encodeURIComponent(id)}`;

export const api = {
  list: (query) => call("GET", "", { query }),
  counts: (query) => call("GET", "", { query: { ...query, status: undefined, countsOnly: "true" } }),
  get: (id) => call("GET", one(id)),
  history: (id) => call("GET", `${one(id)}/history`),
  suspend: (id) => call("POST", `${one(id)}/pause`),
  resume: (id) => call("POST", `${one(id)}/resume`),
  terminate: (id, output) => call("POST", `${one(id)}/terminate`, { body: output }),
  raiseEvent: (id, name, payload) => call("POST", `${one(id)}/raiseEvent/${encodeURIComponent(name)}`, { body: payload }),
  purge: (id) => call("POST", `${one(id)}/purge`),
  rerun: (id, request) => call("POST", `${one(id)}/rerun`, { body: request }),
  // A token is checked with the cheapest read there is.
  check: (token) => call("GET", "", { query: { pageSize: 1 }, token }),
};
