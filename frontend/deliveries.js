// Deliveries to the hospitals (docs/hl7.md "Outbound"): the reports the hospitals'
// systems have not acknowledged yet — waiting, being retried, or refused — with a
// button to send one again. Coordinators; the list reloads on an escalation and
// every few seconds while it is open (deliveries move without notifications).
import { ApiError } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { t } from "./i18n.js";

async function request(method, path) {
  const resp = await fetch(path, { method, credentials: "same-origin", headers: { Accept: "application/json" } });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = data?.error || {};
    throw new ApiError(resp.status, e.code || `http_${resp.status}`, e.message);
  }
  return data;
}

const REFRESH_MS = 3000;
const when = (at) => (at ? new Date(at).toLocaleString() : "—");

export function deliveryState(item) {
  return t(`delivery.state.${item.state}`);
}

export function mountDeliveries(container, app) {
  const body = h("tbody", { id: "deliveries-body" });
  const empty = h("p", { class: "muted", id: "deliveries-empty", hidden: true }, t("deliveries.empty"));
  const table = h("table", { class: "deliveries", id: "deliveries-table" },
    h("thead", {}, h("tr", {},
      ...["exam", "destination", "message", "state", "attempts", "error", "last", ""].map(
        (k) => h("th", { scope: "col" }, k ? t(`deliveries.col.${k}`) : "")))),
    body);
  container.append(
    h("section", { class: "card", "aria-labelledby": "deliveries-title" },
      h("h1", { id: "deliveries-title" }, t("deliveries.title")),
      h("p", { class: "small muted" }, t("deliveries.intro")),
      empty, table));
  let stopped = false;

  function row(item) {
    const resend = h("button", { type: "button", class: "btn resend", onclick: async () => {
      resend.disabled = true;
      try {
        await request("POST", `/api/deliveries/${encodeURIComponent(item.id)}/resend`);
        toast(t("deliveries.resent"), "info", 4000);
      } catch (err) {
        toast(t("deliveries.error", { message: err.message || err.code }), "warn", 8000);
      }
      await refresh();
    } }, t("deliveries.resend"));
    return h("tr", { class: `delivery state-${item.state}`, dataset: { id: item.id, state: item.state } },
      h("td", {}, h("a", { href: `#/exam/${encodeURIComponent(item.exam_id)}` }, item.accession_number || item.exam_id.slice(0, 8))),
      h("td", {}, item.destination?.name || "—"),
      h("td", {}, `${item.message_type} (${item.control_id})`),
      h("td", { class: "delivery-state" }, deliveryState(item)),
      h("td", {}, String(item.attempts)),
      h("td", { class: "small" }, item.last_error || (item.ack_code ? item.ack_code : "—")),
      h("td", { class: "small" }, when(item.last_attempt_at)),
      h("td", {}, resend));
  }

  async function refresh() {
    if (stopped) return;
    let data;
    try {
      data = await request("GET", "/api/deliveries");
    } catch (err) {
      clear(body);
      empty.hidden = false;
      empty.textContent = t("deliveries.error", { message: err.message || err.code });
      return;
    }
    clear(body, ...data.deliveries.map(row));
    empty.hidden = data.deliveries.length > 0;
    table.hidden = data.deliveries.length === 0;
    empty.textContent = t("deliveries.empty");
  }

  const onNotification = (ev) => {
    if ((ev.detail?.kind || "") === "escalation.raised") refresh();
  };
  app.notifications.addEventListener("notification", onNotification);
  refresh();
  const every = setInterval(refresh, REFRESH_MS);
  return () => {
    stopped = true;
    clearInterval(every);
    app.notifications.removeEventListener("notification", onNotification);
  };
}
