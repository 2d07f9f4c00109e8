// Entry point: session, hash router, top bar, personal notifications.
// Every view is `mount(container, app) -> cleanup`, so leaving a view closes its sockets.
import { api, onUnauthorized } from "./api.js";
import { $, clear, h, toast, beep } from "./dom.js";
import { initLang, setLang, getLang, onLangChange, t } from "./i18n.js";
import { Notifications } from "./notifications.js";
import { mountLogin } from "./login.js";
import { mountWorklist } from "./worklist.js";
import { mountRequestForm } from "./requestform.js";
import { mountRoom } from "./room.js";
import { preloadViewer } from "./imaging.js";
import { firstImageSettled } from "./firstimage.js";
import { passwordDialog, logoutEverywhere } from "./account.js";
import { mountReconciliation } from "./reconciliation.js";
import { mountDeliveries } from "./deliveries.js";
import { mountMonthly } from "./monthly.js";

import { StrokeAlarm, ALARMED_ROLES } from "./strokealarm.js";

// Who reconciles images kept aside (docs/dicomweb.md "Filing and reconciliation").
const RECONCILERS = ["manipulator", "coordinator"];

const app = {
  me: null,
  notifications: new Notifications(),
  strokeAlarm: null,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  // A socket was closed because the session ended: as after a 401.
  sessionEnded() {
    if (!app.me) return;
    app.me = null;
    app.notifications.stop();
    app.strokeAlarm?.stop();
    toast(t("app.session_expired"), "warn");
    route();
  },
};

let cleanup = null;

function renderChrome() {
  $("#lang").value = getLang();
  $("#lang-label").textContent = t("app.language");
  $(".skip-link").textContent = t("app.skip");
  const logout = $("#logout");
  logout.textContent = t("app.logout");
  logout.hidden = !app.me;
  for (const [id, key] of [["#password", "account.password"], ["#logout-everywhere", "account.everywhere"]]) {
    const b = $(id);
    b.textContent = t(key);
    b.hidden = !app.me;
  }
  const who = $("#whoami");
  who.textContent = app.me ? `${app.me.display_name} · ${t(`role.${app.me.role}`)}` : "";
  const nav = clear($("#topnav"));
  if (!app.me) return;
  nav.append(h("a", { href: "#/worklist", class: "navlink" }, t("nav.worklist")));
  if (app.me.role === "urgentist") {
    nav.append(h("a", { href: "#/new", class: "navlink", id: "nav-new" }, t("nav.new")));
  }
  if (RECONCILERS.includes(app.me.role)) {
    nav.append(h("a", { href: "#/reconciliation", class: "navlink", id: "nav-reconciliation" }, t("nav.reconciliation")));
  }
  if (app.me.role === "coordinator") {
    nav.append(h("a", { href: "#/deliveries", class: "navlink", id: "nav-deliveries" }, t("nav.deliveries")));
    nav.append(h("a", { href: "#/monthly", class: "navlink", id: "nav-monthly" }, t("nav.monthly")));
  }
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const main = clear($("#main"));
  document.title = "Téléimagerie";
  const hash = location.hash || "#/worklist";
  renderChrome();
  if (!app.me) {
    cleanup = mountLogin(main, app, onLoggedIn);
    return;
  }
  const [, view, arg] = hash.split("/");
  if (view === "exam" && arg) {
    cleanup = mountRoom(main, app, decodeURIComponent(arg));
  } else if (view === "reconciliation" && RECONCILERS.includes(app.me.role)) {
    cleanup = mountReconciliation(main, app);
  } else if (view === "deliveries" && app.me.role === "coordinator") {
    cleanup = mountDeliveries(main, app);
  } else if (view?.split("?")[0] === "monthly" && app.me.role === "coordinator") {
    cleanup = mountMonthly(main);
  } else if (view === "new" && app.me.role === "urgentist") {
    cleanup = mountRequestForm(main, app);
  } else {
    cleanup = mountWorklist(main, app);
  }
  main.focus({ preventScroll: true });
}

function onLoggedIn(user) {
  app.me = user;
  startNotifications();
  if (!location.hash || location.hash === "#/login") location.hash = "#/worklist";
  else route();
}

function startNotifications() {
  app.notifications.stop();
  app.notifications = new Notifications();
  app.notifications.addEventListener("ended", () => app.sessionEnded());
  app.notifications.addEventListener("notification", (ev) => {
    const n = ev.detail;
    // The worklist reloads on any notification; only the others are told who took it.
    if (n.kind === "exam.taken" && n.body?.radiologist?.id === app.me?.id) return;
    const exam = n.exam || {};
    const kind = n.kind || "";
    const who = exam.patient ? exam.patient.name.replaceAll("^", " ") : exam.accession_number || "";
    const urgent = kind.startsWith("escalation");
    const taker = kind === "exam.taken" ? ` (${n.body?.radiologist?.display_name || "?"})` : "";
    toast(`${t(`notify.${kind}`)}${taker} — ${who}`, urgent ? "danger" : "info", urgent ? 0 : 8000);
    if (urgent || kind === "exam.assigned") beep();
  });
  app.notifications.start();
  app.strokeAlarm?.stop();
  app.strokeAlarm = null;
  if (ALARMED_ROLES.includes(app.me?.role)) {
    app.strokeAlarm = new StrokeAlarm(app);
    app.strokeAlarm.start();
  }
}

async function boot() {
  initLang();
  $("#lang").addEventListener("change", (ev) => setLang(ev.target.value));
  onLangChange(() => route());
  $("#logout").addEventListener("click", async () => {
    try {
      await api.logout();
    } catch {
      // the session may already be gone; we leave either way
    }
    app.me = null;
    app.notifications.stop();
    app.strokeAlarm?.stop();
    sessionStorage.clear();
    location.hash = "#/login";
    route();
  });
  $("#password").addEventListener("click", () => passwordDialog());
  $("#logout-everywhere").addEventListener("click", () =>
    logoutEverywhere(() => {
      app.me = null;
      app.notifications.stop();
      app.strokeAlarm?.stop();
      sessionStorage.clear();
      location.hash = "#/login";
      route();
    }));
  onUnauthorized(() => app.sessionEnded());
  window.addEventListener("hashchange", route);
  // Opening an exam room: the viewer's library (4.3 MB) starts downloading and compiling
  // now, beside the session check and the room's socket (docs/benchmarks.md "Viewer").
  if (location.hash.startsWith("#/exam/")) preloadViewer();
  try {
    app.me = await api.me();
  } catch {
    app.me = null;
  }
  route();
  // On a room, the personal channel and the stroke alarm's first poll (the worklist's
  // query) once the room's first image is on screen, at most 2 s later: their socket and
  // request took the server and the main thread before that image.
  const me = app.me;
  if (me) {
    firstImageSettled().then(() => {
      if (app.me === me) startNotifications();
    });
  }
}

boot();
