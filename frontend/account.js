// The account menu's two actions (docs/design.md "Accounts"): change one's password
// (the current one is asked; the other sessions end) and log out everywhere.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t, errorText } from "./i18n.js";

export function passwordDialog() {
  const field = (id, autocomplete) => h("input", { type: "password", id, autocomplete, required: true, minlength: 12 });
  const current = field("pw-current", "current-password");
  const fresh = field("pw-new", "new-password");
  const err = h("p", { class: "field-error", id: "pw-error", role: "alert" });
  const save = h("button", { type: "submit", class: "btn btn-primary", id: "pw-save" }, t("account.save"));
  const dialog = h("dialog", { class: "dialog", id: "pw-dialog", "aria-labelledby": "pw-title" },
    h("form", { method: "dialog" },
      h("h2", { id: "pw-title" }, t("account.password_title")),
      h("p", {}, t("account.password_text")),
      h("label", { for: "pw-current" }, t("account.current")), current,
      h("label", { for: "pw-new" }, t("account.new")), fresh, err,
      h("div", { class: "form-actions" },
        h("button", { type: "button", class: "btn btn-ghost", onclick: () => dialog.close() }, t("form.cancel")), save)));
  dialog.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (fresh.value.length < 12) {
      err.textContent = t("account.too_short");
      return;
    }
    save.disabled = true;
    try {
      await api.changePassword(current.value, fresh.value);
      dialog.close();
      toast(t("account.password_changed"), "ok");
    } catch (e) {
      err.textContent = e.code === "wrong_password" ? t("account.wrong_password")
        : e.status === 429 ? t("account.wait") : `${t("room.command_failed")} : ${errorText(e)}`;
      current.value = "";
      current.focus();
    } finally {
      save.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  current.focus();
}

/** Ends every session of the user, this one included; `then` runs after. */
export async function logoutEverywhere(then) {
  if (!window.confirm(t("account.everywhere_confirm"))) return;
  try {
    await api.logoutEverywhere();
  } catch {
    // the session may already be gone; we leave either way
  }
  then();
}
