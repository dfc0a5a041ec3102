// The history of an instance as bars over time: what ran in parallel, what waited, what was retried.

import { h, duration, instancePath } from "./util.js";

const MAX_ROWS = 400;
const OPENERS = {
  taskScheduled: "activity",
  timerCreated: "timer",
  childWorkflowInstanceCreated: "child",
  executionSuspended: "suspended",
};
const CLOSERS = {
  taskCompleted: "completed",
  taskFailed: "failed",
  timerFired: "fired",
  childWorkflowInstanceCompleted: "completed",
  childWorkflowInstanceFailed: "failed",
};
const POINTS = {
  eventRaised: "event", eventSent: "event", executionTerminated: "terminated",
  executionStalled: "stalled", continueAsNew: "continued",
};
const KIND_LABELS = {
  activity: "Activity", timer: "Timer", child: "Child workflow", suspended: "Suspended", event: "Event",
  wait: "Waits for",
  terminated: "Terminated", stalled: "Stalled", continued: "Continued as new",
};

// The row labels are short, to leave room for the names.
const SHORT_LABELS = { child: "Child", wait: "Waits for" };

const time = (event) => Date.parse(event.timestamp);

function detail(event, ...keys) {
  let value = event.details ?? {};
  for (const key of keys) value = value?.[key];
  return value;
}

// Pairs each opening event with what answered it (by taskScheduledID, or for timers the timer's ID).
export function spansOf(events) {
  const spans = [];
  const open = new Map();
  const attempts = new Map(); // the attempts of one call: retries keep its taskExecutionId
  const names = new Map(); // taskExecutionId -> activity name, for the delays between retries
  const waits = []; // waits for an event, not yet answered
  let suspended = null;
  for (const event of events) {
    const kind = OPENERS[event.type];
    if (kind === "suspended") {
      suspended = { kind, name: "suspended", start: time(event), end: null, outcome: "pending", events: [event] };
      spans.push(suspended);
    } else if (kind) {
      let name = event.name ?? detail(event, "name") ?? "";
      const span = { kind, name, start: time(event), end: null, outcome: "pending", events: [event], id: event.eventID };
      if (kind === "child") span.childID = detail(event, "instanceId") ?? null;
      if (kind === "timer") {
        const fireAt = Date.parse(detail(event, "fireAt") ?? "");
        const retryOf = names.get(detail(event, "activityRetry", "taskExecutionId"))
          ?? detail(event, "childWorkflowRetry", "instanceId");
        const waitsFor = detail(event, "externalEvent", "name");
        if (waitsFor !== undefined) {
          // The SDK's wait for an event: it ends when the event comes.
          span.kind = "wait";
          span.name = waitsFor;
          waits.push(span);
        } else {
          const after = Number.isNaN(fireAt) ? "" : ` (${duration(fireAt - span.start)})`;
          span.name = name || (retryOf ? `retry delay of ${retryOf}` : `timer${after}`);
        }
      }
      const call = detail(event, "taskExecutionId") || (kind === "child" ? span.childID : null);
      if (call) {
        const earlier = attempts.get(call) ?? [];
        if (earlier.length) {
          span.attempt = earlier.length + 1;
          earlier[earlier.length - 1].retried = true;
        }
        attempts.set(call, [...earlier, span]);
        if (kind === "activity") names.set(call, name);
      }
      open.set(event.eventID, span);
      spans.push(span);
    } else if (CLOSERS[event.type]) {
      const ref = event.taskScheduledID ?? detail(event, "taskScheduledId") ?? detail(event, "timerId");
      const span = open.get(ref);
      if (span) {
        // A timer ends when it was due, which its fired event records.
        const due = span.kind === "timer" ? Date.parse(detail(event, "fireAt") ?? "") : NaN;
        span.end = Math.max(time(event), Number.isNaN(due) ? -Infinity : due);
        span.outcome = CLOSERS[event.type];
        span.events.push(event);
        open.delete(ref);
      }
    } else if (event.type === "executionResumed" && suspended) {
      suspended.end = time(event);
      suspended.outcome = "resumed";
      suspended.events.push(event);
      suspended = null;
    } else if (POINTS[event.type]) {
      const eventName = event.name ?? detail(event, "name");
      const wait = event.type === "eventRaised" ? waits.find((w) => w.name === eventName) : undefined;
      if (wait) {
        wait.end = time(event);
        wait.outcome = "received";
        wait.events.push(event);
        waits.splice(waits.indexOf(wait), 1);
      }
      spans.push({ kind: POINTS[event.type], name: event.name ?? detail(event, "name") ?? "", start: time(event),
        end: time(event), outcome: "point", events: [event], point: true });
    }
  }
  return spans;
}

function niceStep(total, target = 6) {
  const raw = Math.max(total / target, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * power) return m * power;
  return 10 * power;
}

function spanLabel(span) {
  const parts = [KIND_LABELS[span.kind] ?? span.kind, span.name].filter(Boolean);
  return parts.join(" ");
}

function spanSummary(span, t0, running) {
  const state = span.outcome !== "pending" ? span.outcome : running ? "still waiting" : "never finished";
  const attempt = span.attempt ? `, attempt ${span.attempt}` : "";
  const took = span.point ? "" : `, ${duration((span.end ?? Date.now()) - span.start)}`;
  return `${spanLabel(span)}${attempt}: ${state}${took}, at +${duration(span.start - t0)}`;
}

// `onSelect(events)` shows the details of the chosen bar's events.
export function renderTimeline(events, { running, onSelect }) {
  const spans = spansOf(events);
  const startEvent = events.find((e) => e.type === "executionStarted") ?? events[0];
  if (!startEvent) return h("p", { class: "empty" }, "The history is empty.");
  const t0 = time(startEvent);
  const last = Math.max(...events.map(time));
  const t1 = Math.max(running ? Date.now() : last, t0 + 1, ...spans.map((s) => s.end ?? 0));
  const total = t1 - t0;
  const x = (t) => `${(((t - t0) / total) * 100).toFixed(3)}%`;

  const step = niceStep(total, matchMedia("(max-width: 760px)").matches ? 3 : 6);
  const ticks = [];
  for (let t = 0; t <= total; t += step) ticks.push(t);
  const axis = h("div", { class: "tl-axis", "aria-hidden": "true" },
    ticks.map((t) => {
      const tick = h("span", { class: `tl-tick${t > 0.85 * total ? " end" : ""}` }, `+${duration(t)}`);
      tick.style.left = x(t0 + t);
      return tick;
    }));

  const rows = spans.slice(0, MAX_ROWS).map((span) => {
    const end = span.end ?? t1;
    const summary = spanSummary(span, t0, running);
    const bar = h("button", {
      type: "button",
      class: `tl-bar kind-${span.kind} outcome-${span.outcome}${span.point ? " point" : ""}`
        + `${span.outcome === "pending" && !running ? " abandoned" : ""}`,
      "aria-label": summary,
      title: summary,
      dataset: { kind: span.kind, outcome: span.outcome, name: span.name },
      onclick: () => onSelect(span.events, summary),
    });
    bar.style.left = x(span.start);
    if (!span.point) bar.style.width = `max(${(((end - span.start) / total) * 100).toFixed(3)}%, 3px)`;
    const label = h("div", { class: "tl-label" },
      h("span", { class: `tl-kind kind-${span.kind}` }, SHORT_LABELS[span.kind] ?? KIND_LABELS[span.kind] ?? span.kind),
      span.childID
        ? h("a", { class: "tl-name", href: instancePath(span.childID), title: span.childID }, span.name || span.childID)
        : h("span", { class: "tl-name", title: span.name }, span.name || "—"),
      span.attempt ? h("span", { class: "tl-attempt" }, `attempt ${span.attempt}`) : null);
    return h("div", { class: "tl-row", role: "listitem", dataset: { kind: span.kind, outcome: span.outcome } },
      label, h("div", { class: "tl-track" }, bar));
  });
  const more = spans.length > MAX_ROWS
    ? h("p", { class: "muted" }, `The first ${MAX_ROWS} of ${spans.length} steps are drawn; the table below lists every event.`)
    : null;
  // The legend names what this timeline shows.
  const kinds = new Set(spans.map((s) => s.kind));
  const outcomes = new Set(spans.map((s) => s.outcome));
  const legend = h("p", { class: "tl-legend", "aria-hidden": "true" },
    ["activity", "timer", "wait", "child", "event", "suspended"].filter((k) => kinds.has(k)).map((k) =>
      h("span", {}, h("span", { class: `swatch kind-${k}` }), k === "wait" ? "Waiting for an event" : KIND_LABELS[k])),
    outcomes.has("failed") ? h("span", {}, h("span", { class: "swatch outcome-failed" }), "Failed") : null,
    outcomes.has("pending")
      ? h("span", {}, h("span", { class: "swatch outcome-pending" }), running ? "Not done yet" : "Never finished")
      : null);
  if (!rows.length) {
    return h("div", { class: "timeline" }, h("p", { class: "muted" }, "No activities, timers, child workflows or events yet."));
  }
  const lines = h("div", { class: "tl-lines", "aria-hidden": "true" }, ticks.map((t) => {
    const line = h("span");
    line.style.left = x(t0 + t);
    return line;
  }));
  return h("div", { class: "timeline" },
    h("p", { class: "tl-total" }, `${spans.length} ${spans.length === 1 ? "step" : "steps"} over ${duration(last - t0)}`),
    legend,
    h("div", { class: "tl-grid" }, h("div", { class: "tl-head" }, h("span", {}, "Step"), axis),
      h("div", { class: "tl-rows", role: "list", "aria-label": "Steps of the history" }, lines, rows)),
    more);
}

// Every event as a row; choosing one shows its fields.
export function renderEventTable(events, { onSelect }) {
  const t0 = events.length ? time(events[0]) : 0;
  return h("table", { class: "events" },
    h("caption", { class: "visually-hidden" }, "History events"),
    h("thead", {}, h("tr", {}, ["#", "Event ID", "Event", "Name", "Answers", "Time"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, events.map((event, index) => h("tr", { dataset: { eventId: event.eventID, type: event.type } },
      h("td", { "data-label": "#" }, String(index + 1)),
      h("td", { "data-label": "Event ID" }, event.eventID >= 0 ? String(event.eventID) : ""),
      h("td", { "data-label": "Event" }, h("button", {
        type: "button", class: "link-button", onclick: () => onSelect([event], `Event ${index + 1}: ${event.type}`),
      }, event.type)),
      h("td", { "data-label": "Name" }, event.name ?? ""),
      h("td", { "data-label": "Answers" }, event.taskScheduledID === null || event.taskScheduledID === undefined
        ? "" : `#${event.taskScheduledID}`),
      h("td", { "data-label": "Time" }, h("time", { datetime: event.timestamp, title: event.timestamp },
        `+${duration(time(event) - t0)}`))))));
}
