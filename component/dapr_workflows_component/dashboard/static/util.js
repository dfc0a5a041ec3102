// Small helpers shared by the views: building DOM safely, times, JSON and statuses.

// Builds an element; children that are strings become text nodes (data never goes through innerHTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export const TERMINAL = new Set(["COMPLETED", "FAILED", "TERMINATED", "CANCELED", "CONTINUED_AS_NEW"]);
export const STATUSES = [
  "RUNNING", "PENDING", "SUSPENDED", "COMPLETED", "FAILED", "TERMINATED", "CONTINUED_AS_NEW", "CANCELED",
];

export function statusLabel(status) {
  const text = String(status ?? "UNKNOWN").toLowerCase().replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// A status always shows as words as well as a colour.
export function statusBadge(status) {
  return h("span", { class: `status status-${String(status).toLowerCase()}` }, statusLabel(status));
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const exact = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  fractionalSecondDigits: 3, timeZoneName: "short",
});

export function ago(iso, now = Date.now()) {
  const seconds = (Date.parse(iso) - now) / 1000;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [30, "day"], [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return iso;
}

export function exactTime(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? String(iso) : exact.format(new Date(ms));
}

// A time as "3 minutes ago", with the exact time on hover and for assistive technology.
export function timeCell(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: `${exactTime(iso)} (${iso})` }, ago(iso));
}

export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

// A payload string as stored: pretty JSON when it is JSON, else the text itself.
export function parseMaybeJson(text) {
  if (text === undefined || text === null) return { ok: false, text: "" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, text: String(text) };
  }
}

// Formatted JSON with its tokens coloured (spans with classes; no HTML from the data).
export function jsonBlock(value, label) {
  const text = JSON.stringify(value, null, 2) ?? "undefined";
  const code = h("code");
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const m of text.matchAll(token)) {
    code.append(text.slice(last, m.index));
    const kind = m[1] ? (m[2] ? "key" : "string") : m[3] ? "literal" : "number";
    code.append(h("span", { class: `json-${kind}` }, m[1] ?? m[0]));
    if (m[2]) code.append(m[2]);
    last = m.index + m[0].length;
  }
  code.append(text.slice(last));
  return h("pre", { class: "json", tabindex: "0", "aria-label": label }, code);
}

export function payloadBlock(text, label) {
  const parsed = parseMaybeJson(text);
  if (parsed.ok) return jsonBlock(parsed.value, label);
  return h("pre", { class: "json", tabindex: "0", "aria-label": label }, h("code", {}, parsed.text));
}

export function instancePath(id) {
  return `/dashboard/instances/${encodeURIComponent(id)}`;
}

export function instanceLink(id, attrs = {}) {
  return h("a", { href: instancePath(id), class: "mono", ...attrs }, id);
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
