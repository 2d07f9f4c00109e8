// The signature dialog: the password is asked again before a report becomes immutable.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t, errorText } from "./i18n.js";

export function signDialog(room, values, onSigned) {
  const password = h("input", { type: "password", id: "sign-password", autocomplete: "current-password", required: true });
  const err = h("p", { class: "field-error", id: "sign-error", role: "alert" });
  // A second reading asked for by the author (docs/review.md).
  const review = h("input", { type: "checkbox", id: "sign-review" });
  const confirm = h("button", { type: "submit", class: "btn btn-primary", id: "sign-confirm" }, t("report.sign_confirm"));
  const dialog = h("dialog", { class: "dialog", id: "sign-dialog", "aria-labelledby": "sign-title" },
    h("form", { method: "dialog" },
      h("h2", { id: "sign-title" }, t("report.sign_title")),
      h("p", {}, t("report.sign_text")),
      values.critical ? h("p", { class: "critical-flag" }, `⚠ ${t("report.critical")}`) : null,
      h("label", { for: "sign-password" }, t("login.password")), password,
      h("p", { class: "check" }, review, " ", h("label", { for: "sign-review" }, t("report.ask_review"))), err,
      h("div", { class: "form-actions" },
        h("button", { type: "button", class: "btn btn-ghost", onclick: () => dialog.close() }, t("form.cancel")), confirm)));
  dialog.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!password.value) {
      err.textContent = t("form.err.required");
      return;
    }
    confirm.disabled = true;
    try {
      const result = await api.signReport(room.examId, password.value, review.checked);
      dialog.close();
      toast(t("report.signed_toast"), "ok");
      onSigned(result);
    } catch (e) {
      err.textContent = e.status === 401 || e.status === 403 ? t("report.bad_password") : `${t("room.command_failed")} : ${errorText(e)}`;
      password.value = "";
      password.focus();
    } finally {
      confirm.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  password.focus();
}
