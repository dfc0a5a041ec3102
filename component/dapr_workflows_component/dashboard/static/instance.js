// One instance: its state, payloads, failure, parent and children, history timeline and actions.

import { api } from "./api.js";
import { confirmDialog, parseJsonField, textField } from "./dialogs.js";
import { renderEventTable, renderTimeline } from "./timeline.js";
import {
  h, clear, duration, exactTime, instanceLink, jsonBlock, payloadBlock, statusBadge, timeCell, TERMINAL,
} from "./util.js";

const RERUN_FROM = { taskScheduled: "activity", timerCreated: "timer", childWorkflowInstanceCreated: "child workflow" };

function parentOf(inst, events) {
  if (inst.parentInstanceID) return inst.parentInstanceID;
  const started = events.find((e) => e.type === "executionStarted");
  return started?.details?.parentInstance?.workflowInstance?.instanceId ?? null;
}

function section(title, ...content) {
  const id = `section-${title.toLowerCase().replaceAll(/[^a-z]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), content);
}

function payloadSection(title, text, empty) {
  return section(title, text === undefined ? h("p", { class: "muted" }, empty) : payloadBlock(text, title));
}

export function instanceView({ main, navigate, flash }, id) {
  let alive = true;
  let lastKey = "";
  const details = h("section", { class: "card event-details", "aria-labelledby": "details-title", hidden: true });
  const banner = h("div", { class: "error-banner", role: "alert", hidden: true });
  const body = h("div", { class: "instance-body" });
  clear(main,
    h("p", { class: "breadcrumb" }, h("a", { href: "/dashboard/" }, "Instances"), " / ", h("span", { class: "mono" }, id)),
    banner, body);

  const showError = (message) => {
    banner.hidden = !message;
    banner.textContent = message ?? "";
  };

  let shown = null; // what is on screen: { inst, events, parent }

  const showDetails = (events, title) => {
    details.hidden = false;
    // A finished top-level instance can run again from the step these events are of.
    const step = events.find((e) => RERUN_FROM[e.type]);
    const canRerun = step && shown && TERMINAL.has(shown.inst.runtimeStatus) && !shown.parent;
    clear(details,
      h("div", { class: "details-head" },
        h("h2", { id: "details-title", tabindex: "-1" }, title),
        h("div", { class: "actions" },
          canRerun ? h("button", { type: "button", id: "details-rerun",
            onclick: () => rerunDialog(shown.events, step.eventID) }, "Rerun from here…") : null,
          h("button", { type: "button", class: "ghost", onclick: () => { details.hidden = true; } }, "Close"))),
      events.map((event) => h("div", { class: "event-detail" },
        h("h3", {}, event.type, event.name ? ` · ${event.name}` : "", event.eventID >= 0 ? ` (event ID ${event.eventID})` : ""),
        h("p", { class: "muted" }, h("time", { datetime: event.timestamp }, exactTime(event.timestamp))),
        jsonBlock(event.details ?? {}, `Fields of event ${event.eventID}`))));
    details.querySelector("h2").focus();
  };

  // Runs an action; a refusal of the API is shown as its sentence, inside the dialog that asked.
  const act = async (work, done) => {
    await work();
    flash(done);
    await refresh(true);
  };

  const actions = (inst, events, parent) => {
    const status = inst.runtimeStatus;
    const running = !TERMINAL.has(status);
    const buttons = [];
    if (status === "RUNNING" || status === "PENDING") {
      buttons.push(h("button", { type: "button", id: "action-suspend", onclick: () => confirmDialog({
        title: "Suspend this instance?",
        text: "It stops taking new steps until it is resumed; work already handed to a worker finishes.",
        confirmLabel: "Suspend",
        onConfirm: () => act(() => api.suspend(id), "Suspended."),
      }) }, "Suspend"));
    }
    if (status === "SUSPENDED") {
      buttons.push(h("button", { type: "button", id: "action-resume", onclick: () => confirmDialog({
        title: "Resume this instance?", confirmLabel: "Resume",
        onConfirm: () => act(() => api.resume(id), "Resumed."),
      }) }, "Resume"));
    }
    if (running) {
      buttons.push(h("button", { type: "button", id: "action-raise-event", onclick: () => raiseEventDialog() }, "Raise event"));
      buttons.push(h("button", { type: "button", id: "action-terminate", class: "danger", onclick: () => confirmDialog({
        title: "Terminate this instance?",
        text: "It ends now as TERMINATED, with its child workflows; this cannot be undone.",
        fields: [textField("terminate-output", "Output (JSON, optional)", { multiline: true, rows: 3, placeholder: '{"reason": "cancelled by operator"}' })],
        confirmLabel: "Terminate", danger: true,
        onConfirm: (form) => {
          const output = parseJsonField(form.elements["terminate-output"].value, "output");
          return act(() => api.terminate(id, output), "Terminated.");
        },
      }) }, "Terminate"));
    }
    if (!running && !parent) {
      buttons.push(h("button", { type: "button", id: "action-rerun", onclick: () => rerunDialog(events) }, "Rerun…"));
    }
    if (!running) {
      buttons.push(h("button", { type: "button", id: "action-purge", class: "danger", onclick: () => confirmDialog({
        title: "Purge this instance?",
        text: "Its state and history are deleted, with its child workflows; this cannot be undone.",
        confirmLabel: "Purge", danger: true,
        onConfirm: async () => {
          await api.purge(id);
          flash(`Purged ${id}.`);
          navigate("/dashboard/");
        },
      }) }, "Purge"));
    }
    return h("div", { class: "actions", role: "toolbar", "aria-label": "Actions" }, buttons);
  };

  const raiseEventDialog = () => confirmDialog({
    title: "Raise an event",
    text: "The instance receives it when it waits for an event of that name (or later, when it asks).",
    fields: [
      textField("event-name", "Event name", { required: true, autocomplete: "off" }),
      textField("event-payload", "Payload (JSON, optional)", { multiline: true, rows: 4, placeholder: '{"approved": true}' }),
    ],
    confirmLabel: "Raise event",
    onConfirm: (form) => {
      const name = form.elements["event-name"].value.trim();
      if (!name) throw new Error("Give the event a name.");
      const payload = parseJsonField(form.elements["event-payload"].value, "payload");
      return act(() => api.raiseEvent(id, name, payload), `Raised ${name}.`);
    },
  });

  const rerunDialog = (events, fromEventID) => {
    const choices = events.filter((e) => RERUN_FROM[e.type]);
    if (!choices.length) {
      flash("Nothing to rerun from: the history has no activity, timer or child workflow.");
      return;
    }
    const from = h("select", { id: "rerun-from", name: "rerun-from" }, choices.map((e) =>
      h("option", { value: String(e.eventID), selected: e.eventID === fromEventID },
        `#${e.eventID} ${RERUN_FROM[e.type]} ${e.name ?? ""}`.trim())));
    const replace = h("input", { type: "checkbox", id: "rerun-replace-input" });
    const input = textField("rerun-input", "New input of the activity (JSON)", { multiline: true, rows: 3, disabled: true });
    replace.addEventListener("change", () => { input.querySelector("textarea").disabled = !replace.checked; });
    confirmDialog({
      title: "Rerun from an event",
      text: "A new instance replays this one's history up to the chosen step; that step and everything after it run again.",
      fields: [
        h("div", { class: "field" }, h("label", { for: "rerun-from" }, "Run again from"), from),
        textField("rerun-new-id", "New instance ID (optional)", { autocomplete: "off" }),
        h("div", { class: "check" }, replace, h("label", { for: "rerun-replace-input" }, "Replace the activity's input")),
        input,
      ],
      confirmLabel: "Rerun",
      onConfirm: async (form) => {
        const request = { fromEventID: Number(from.value) };
        const newID = form.elements["rerun-new-id"].value.trim();
        if (newID) request.newInstanceID = newID;
        if (replace.checked) {
          const text = parseJsonField(form.elements["rerun-input"].value, "input");
          request.input = text === undefined ? null : JSON.parse(text);
        }
        const answer = await api.rerun(id, request);
        flash(`Rerun started as ${answer.instanceID}.`);
        navigate(`/dashboard/instances/${encodeURIComponent(answer.instanceID)}`);
      },
    });
  };

  const render = ({ inst, events, historyError, children, childrenError }) => {
    const props = inst.properties ?? {};
    const parent = parentOf(inst, events);
    shown = { inst, events, parent };
    const running = !TERMINAL.has(inst.runtimeStatus);
    const took = Date.parse(running ? new Date().toISOString() : inst.lastUpdatedAt) - Date.parse(inst.createdAt);
    const failure = props["dapr.workflow.failure.error_type"] || props["dapr.workflow.failure.error_message"];
    const head = h("div", { class: "instance-head card" },
      h("div", { class: "title-row" },
        h("h1", {}, inst.workflowName),
        statusBadge(inst.runtimeStatus)),
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "Instance ID"), h("dd", { class: "mono", id: "instance-id" }, inst.instanceID)),
        h("div", {}, h("dt", {}, "Created"), h("dd", {}, timeCell(inst.createdAt))),
        h("div", {}, h("dt", {}, "Updated"), h("dd", {}, timeCell(inst.lastUpdatedAt))),
        h("div", {}, h("dt", {}, running ? "Running for" : "Took"), h("dd", {}, duration(took))),
        parent ? h("div", {}, h("dt", {}, "Parent"), h("dd", { id: "parent" }, instanceLink(parent))) : null),
      actions(inst, events, parent));

    const failureSection = failure ? h("section", { class: "card failure", "aria-labelledby": "failure-title" },
      h("h2", { id: "failure-title" }, "Failure"),
      h("p", {}, h("strong", {}, props["dapr.workflow.failure.error_type"] ?? "Error"), ": ",
        props["dapr.workflow.failure.error_message"] ?? ""),
      props["dapr.workflow.failure.stack_trace"]
        ? h("details", { open: true }, h("summary", {}, "Stack trace"),
          h("pre", { class: "stack", tabindex: "0" }, props["dapr.workflow.failure.stack_trace"]))
        : null) : null;

    const timeline = historyError
      ? h("p", { class: "error" }, historyError)
      : renderTimeline(events, { running, onSelect: showDetails });
    const eventTable = historyError ? null : h("details", { class: "events-wrap" },
      h("summary", {}, `All ${events.length} history events`),
      h("div", { class: "table-wrap" }, renderEventTable(events, { onSelect: showDetails })));

    const kids = childrenError ? h("p", { class: "error" }, childrenError) : children.instances.length
      ? h("ul", { class: "children" }, children.instances.map((c) => h("li", {},
        statusBadge(c.runtimeStatus), " ", instanceLink(c.instanceID), " ", h("span", { class: "muted" }, c.workflowName))),
        children.continuationToken ? h("li", {}, h("a", { href: `/dashboard/?parentInstanceID=${encodeURIComponent(id)}` }, "All children…")) : null)
      : h("p", { class: "muted" }, "None.");

    clear(body,
      head,
      failureSection,
      h("div", { class: "payloads" },
        payloadSection("Input", props["dapr.workflow.input"], "No input."),
        payloadSection("Output", props["dapr.workflow.output"], running ? "Not finished yet." : "No output."),
        payloadSection("Custom status", props["dapr.workflow.custom_status"], "None set.")),
      section("History", timeline, eventTable),
      details,
      section("Child workflows", kids));
  };

  // The history, the largest read, is read again only when the instance changed (or now and then).
  let historyOf = null;
  let history = null;
  let sinceHistory = 0;
  async function refresh(force = false) {
    const [got, kids] = await Promise.allSettled([api.get(id), api.list({ parentInstanceID: id, pageSize: 20 })]);
    if (!alive) return;
    sinceHistory += 1;
    if (got.status === "fulfilled" && (force || got.value.lastUpdatedAt !== historyOf || sinceHistory >= 5)) {
      [history] = await Promise.allSettled([api.history(id)]);
      historyOf = got.value.lastUpdatedAt;
      sinceHistory = 0;
      if (!alive) return;
    }
    if (got.status === "rejected") {
      historyOf = null;
      if (got.reason.status === 404) {
        clear(body, h("div", { class: "card" }, h("h1", {}, "No such instance"),
          h("p", {}, "There is no instance ", h("span", { class: "mono" }, id), " (it may have been purged)."),
          h("p", {}, h("a", { href: "/dashboard/" }, "All instances"))));
        showError("");
        lastKey = "";
      } else {
        showError(got.reason.message);
      }
      return;
    }
    showError("");
    const state = {
      inst: got.value,
      events: history.status === "fulfilled" ? history.value.events ?? [] : [],
      historyError: history.status === "rejected" ? history.reason.message : null,
      children: kids.status === "fulfilled" ? kids.value : { instances: [] },
      childrenError: kids.status === "rejected" ? kids.reason.message : null,
    };
    const key = JSON.stringify(state);
    // Re-drawn only when something changed, so focus and open details stay where they are.
    if (!force && key === lastKey) return;
    lastKey = key;
    const focusedId = document.activeElement?.id;
    render(state);
    if (focusedId) document.getElementById(focusedId)?.focus();
  }

  refresh().catch((error) => showError(error.message));
  return { refresh, destroy: () => { alive = false; } };
}
