// The login screen.
import { api } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

export function mountLogin(main, _app, onLoggedIn) {
  const error = h("p", { class: "form-error", id: "login-error", role: "alert" });
  const username = h("input", {
    id: "login-username", name: "username", autocomplete: "username", required: true,
    autocapitalize: "off", spellcheck: "false",
  });
  const password = h("input", {
    id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: "login-submit" }, t("login.submit"));
  const form = h("form", { class: "card login-card", "aria-labelledby": "login-title", novalidate: true },
    h("h1", { id: "login-title" }, t("login.title")),
    h("p", { class: "muted" }, t("login.subtitle")),
    h("label", { for: "login-username" }, t("login.username")), username,
    h("label", { for: "login-password" }, t("login.password")), password,
    error, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    if (!username.value || !password.value) {
      error.textContent = t("login.missing");
      return;
    }
    submit.disabled = true;
    try {
      const { user } = await api.login(username.value.trim(), password.value);
      onLoggedIn(user);
    } catch (err) {
      error.textContent = err.status === 429 ? t("login.throttled") : t("login.failed");
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h("section", { class: "login-wrap" }, form));
  username.focus();
  return () => {};
}
