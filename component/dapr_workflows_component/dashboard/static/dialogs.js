// Confirmation dialogs: a modal <dialog> (focus stays inside, Escape closes), errors shown inside it.

import { h } from "./util.js";

// Parses JSON the user typed; empty means "nothing". Throws a sentence naming the field.
export function parseJsonField(text, what) {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  try {
    JSON.parse(trimmed);
  } catch (error) {
    throw new Error(`The ${what} is not valid JSON: ${error.message}`);
  }
  return trimmed;
}

// `fields` are nodes inside the form; `onConfirm(form)` does the work and may throw to keep it open.
export function confirmDialog({ title, text, fields = [], confirmLabel, danger = false, onConfirm }) {
  const opener = document.activeElement;
  const message = h("p", { class: "error", role: "alert" });
  const confirm = h("button", { type: "submit", class: danger ? "danger" : "primary" }, confirmLabel);
  const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
  const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
  const form = h("form", { method: "dialog" },
    h("h2", { id: titleId }, title),
    text ? h("p", {}, text) : null,
    fields,
    message,
    h("div", { class: "dialog-actions" }, cancel, confirm));
  const dialog = h("dialog", { "aria-labelledby": titleId }, form);
  cancel.addEventListener("click", () => dialog.close());
  // A modal dialog keeps the rest of the page inert, but Tab may still leave for the browser's
  // own controls: it cycles through the dialog's controls instead.
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const controls = [...form.querySelectorAll("input, textarea, select, button")].filter((c) => !c.disabled);
    const first = controls[0];
    const last = controls[controls.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener && document.contains(opener)) opener.focus();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    confirm.disabled = true;
    confirm.setAttribute("aria-busy", "true");
    try {
      await onConfirm(form);
      dialog.close();
    } catch (error) {
      message.textContent = error.message;
    } finally {
      confirm.disabled = false;
      confirm.removeAttribute("aria-busy");
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  // Destructive actions start on Cancel; the others on their first field.
  const first = form.querySelector("input, textarea, select");
  (danger || !first ? cancel : first).focus();
  return dialog;
}

export function textField(id, label, { multiline = false, hint = "", ...attrs } = {}) {
  const input = h(multiline ? "textarea" : "input", {
    id, name: id, "aria-describedby": hint ? `${id}-hint` : undefined, ...attrs,
  });
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}
