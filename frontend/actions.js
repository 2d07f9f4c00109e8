// The action buttons of the room header: what the server says this user may do now.
// Every exam object the server sends this user lists its `commands` (docs/rooms.md
// "The exam object", from rooms.lifecycle); the buttons offer those and nothing else,
// so no lifecycle rule is written here.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t, errorText } from "./i18n.js";

/** Whether the server offers this user the lifecycle command `name` on the room's exam. */
export function can(room, name) {
  return Boolean(room.exam?.commands?.includes(name));
}

export async function runCommand(room, name, body, okKey) {
  try {
    room.exam = await api.command(room.examId, name, body);
    if (okKey) toast(t(okKey), "ok");
    room.refresh();
    return true;
  } catch (err) {
    toast(`${t("room.command_failed")} : ${errorText(err)}`, "danger");
    room.refresh();
    return false;
  }
}

function button(id, label, onclick, cls = "btn") {
  const b = h("button", { type: "button", class: cls, id });
  b.textContent = label;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onclick();
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

function cancelDialog(room) {
  const reason = h("textarea", { id: "cancel-reason", rows: 3, required: true, maxlength: 2000 });
  const err = h("p", { class: "field-error", role: "alert" });
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "cancel-title" },
    h("form", { method: "dialog" },
      h("h2", { id: "cancel-title" }, t("room.cancel_title")),
      h("label", { for: "cancel-reason" }, t("room.cancel_reason")), reason, err,
      h("div", { class: "form-actions" },
        h("button", { type: "button", class: "btn btn-ghost", onclick: () => dialog.close() }, t("form.cancel")),
        h("button", { type: "submit", class: "btn btn-danger", id: "cancel-confirm" }, t("room.cancel_confirm")))));
  dialog.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!reason.value.trim()) {
      err.textContent = t("form.err.required");
      return;
    }
    if (await runCommand(room, "cancel", { reason: reason.value.trim() }, "room.cancelled")) dialog.close();
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

export function actionsFor(room) {
  const { exam } = room;
  const out = [];
  if (can(room, "accept")) {
    out.push(button("accept-exam", t("room.accept"), () => runCommand(room, "accept", undefined, "room.accepted"), "btn btn-primary"));
  }
  if (can(room, "images_complete")) {
    // Irreversible (it starts the report clock): a second click confirms.
    let armed = false;
    const b = button("images-complete", t("room.images_complete"), () => {
      if (!armed) {
        armed = true;
        b.textContent = t("room.images_complete_confirm");
        b.classList.add("btn-danger");
        setTimeout(() => {
          armed = false;
          b.textContent = t("room.images_complete");
          b.classList.remove("btn-danger");
        }, 6000);
        return Promise.resolve();
      }
      return runCommand(room, "images-complete", undefined, "room.images_completed");
    }, "btn btn-primary");
    out.push(b);
  }
  if (can(room, "acknowledge")) {
    // The acknowledgement sits under the report (it must be read first): jump there.
    out.push(h("a", { class: "btn btn-primary", href: "#report-panel", onclick: (ev) => {
      ev.preventDefault();
      document.getElementById("acknowledge-report")?.scrollIntoView({ block: "center" });
      document.getElementById("acknowledge-report")?.focus();
    } }, t("room.read_report")));
  }
  // A read, not a command: the signed report exists from `reported` on.
  if (["reported", "delivered"].includes(exam.status)) {
    out.push(h("a", { class: "btn", id: "report-pdf", href: `/api/exams/${encodeURIComponent(exam.id)}/report.pdf`, target: "_blank", rel: "noopener" }, t("room.pdf")));
  }
  if (can(room, "cancel")) {
    out.push(button("cancel-exam", t("room.cancel"), () => cancelDialog(room), "btn btn-ghost"));
  }
  return out;
}
