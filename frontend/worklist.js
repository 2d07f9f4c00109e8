// The worklist: the caller's exams with priority, a countdown to each deadline, filters,
// and live updates (the personal channel when present, a short poll always).
import { api } from "./api.js";
import { strokeStatsPanel } from "./strokestats.js";
import { reviewPanel } from "./review.js";
import { h, clear, toast, beep } from "./dom.js";
import { t, formatDateTime, age, examLabel } from "./i18n.js";
import {
  ACTIVE, URGENCY_RANK, statusBadge, urgencyBadge, patientName, countdown, currentDeadline, tickCountdowns,
} from "./status.js";

const POLL_MS = 4000;

export function mountWorklist(main, app) {
  const role = app.me.role;
  const filters = JSON.parse(sessionStorage.getItem("ti.filters") || "null") || { scope: "active", urgency: "", q: "" };
  let known = null; // id -> status of the last load, to highlight what changed
  let exams = [];
  const fresh = new Map(); // id -> "new" | "changed", kept for one render cycle

  const scope = h("select", { id: "filter-scope" },
    h("option", { value: "active" }, t("worklist.scope.active")),
    h("option", { value: "all" }, t("worklist.scope.all")),
    ...["requested", "accepted", "protocoled", "acquiring", "images_complete", "reported", "delivered", "cancelled"]
      .map((s) => h("option", { value: s }, t(`status.${s}`))));
  scope.value = filters.scope;
  const urgency = h("select", { id: "filter-urgency" },
    h("option", { value: "" }, t("worklist.urgency.any")),
    ...["emergency", "urgent", "scheduled"].map((u) => h("option", { value: u }, t(`urgency.${u}`))));
  urgency.value = filters.urgency;
  const search = h("input", { id: "filter-q", type: "search", placeholder: t("worklist.search.placeholder"), value: filters.q });
  const count = h("span", { class: "muted", role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("table", { class: "worklist", id: "worklist" },
    h("caption", { class: "sr-only" }, t("worklist.title")),
    h("thead", {}, h("tr", {},
      ...["priority", "patient", "exam", "site", "status", "deadline", "requested", "action"]
        .map((c) => h("th", { scope: "col", class: `col-${c}` }, t(`worklist.col.${c}`))))),
    tbody);

  const header = h("div", { class: "view-head" },
    h("h1", {}, t("worklist.title")),
    role === "urgentist" ? h("a", { class: "btn btn-primary", href: "#/new", id: "new-request" }, t("nav.new")) : null);
  const bar = h("form", { class: "filters", role: "search", "aria-label": t("worklist.filters") },
    h("label", { for: "filter-scope" }, t("worklist.filter.status")), scope,
    h("label", { for: "filter-urgency" }, t("worklist.filter.urgency")), urgency,
    h("label", { for: "filter-q" }, t("worklist.filter.search")), search, count);
  bar.addEventListener("submit", (ev) => ev.preventDefault());
  main.append(h("section", { class: "view worklist-view", "aria-labelledby": "wl-title" }, header,
    role === "coordinator" ? strokeStatsPanel() : null,
    ["radiologist", "coordinator"].includes(role) ? reviewPanel(app.me) : null, bar,
    h("div", { class: "table-wrap" }, table)));
  header.querySelector("h1").id = "wl-title";

  function onFilter() {
    filters.scope = scope.value;
    filters.urgency = urgency.value;
    filters.q = search.value;
    sessionStorage.setItem("ti.filters", JSON.stringify(filters));
    render();
  }
  scope.addEventListener("change", onFilter);
  urgency.addEventListener("change", onFilter);
  search.addEventListener("input", onFilter);

  function visible() {
    const q = filters.q.trim().toLowerCase();
    return exams.filter((e) => {
      if (filters.scope === "active" && !ACTIVE.includes(e.status)) return false;
      if (!["active", "all"].includes(filters.scope) && e.status !== filters.scope) return false;
      if (filters.urgency && e.urgency !== filters.urgency) return false;
      if (q && !`${patientName(e)} ${e.patient.id} ${e.accession_number} ${e.body_part}`.toLowerCase().includes(q)) return false;
      return true;
    }).sort((a, b) => {
      // An open stroke alert comes first, whatever else (docs/stroke.md).
      const sa = Number(!(a.stroke && ACTIVE.includes(a.status))) - Number(!(b.stroke && ACTIVE.includes(b.status)));
      if (sa) return sa;
      const ua = URGENCY_RANK[a.urgency] - URGENCY_RANK[b.urgency];
      if (ua) return ua;
      const da = currentDeadline(a)?.due ?? Infinity;
      const db = currentDeadline(b)?.due ?? Infinity;
      if (da !== db) return da - db;
      return (b.times.requested_at || "").localeCompare(a.times.requested_at || "");
    });
  }

  function row(e) {
    const open = () => app.navigate(`#/exam/${encodeURIComponent(e.id)}`);
    const mark = fresh.get(e.id);
    const stroke = e.stroke ? " stroke-row" : "";
    const tr = h("tr", { class: `wl-row urgency-row-${e.urgency}${stroke}${mark ? ` flash flash-${mark}` : ""}`, dataset: { id: e.id, status: e.status } },
      h("td", { class: "col-priority" }, urgencyBadge(e.urgency),
        e.stroke ? h("span", { class: "badge badge-stroke" }, t("stroke.badge")) : null),
      h("td", { class: "col-patient" }, h("strong", {}, patientName(e)),
        h("div", { class: "muted small" }, `${e.patient.sex} · ${age(e.patient.birth_date)} ${t("unit.years")} · ${e.patient.id}`)),
      h("td", { class: "col-exam" }, examLabel(e.modality, e.body_part),
        h("div", { class: "muted small clamp" }, e.clinical_question)),
      h("td", { class: "col-site" }, e.establishment?.code || ""),
      h("td", { class: "col-status" }, statusBadge(e.status)),
      h("td", { class: "col-deadline" }, countdown(e)),
      h("td", { class: "col-requested" }, formatDateTime(e.times.requested_at)),
      h("td", { class: "col-action" }, h("a", {
        class: "btn btn-small", href: `#/exam/${encodeURIComponent(e.id)}`,
        "aria-label": `${t("worklist.open")} ${patientName(e)} ${examLabel(e.modality, e.body_part)}`,
      }, t("worklist.open"))));
    tr.addEventListener("dblclick", open);
    return tr;
  }

  function render() {
    const items = visible();
    clear(tbody, items.length ? items.map(row) : h("tr", {}, h("td", { colspan: 8, class: "empty" }, t("worklist.empty"))));
    count.textContent = t("worklist.count", { n: items.length });
  }

  function notice(list) {
    fresh.clear();
    const next = new Map(list.map((e) => [e.id, e.status]));
    if (known) {
      for (const e of list) {
        const before = known.get(e.id);
        if (before === undefined) {
          fresh.set(e.id, "new");
          if (role === "radiologist" || role === "coordinator") {
            toast(`${t("worklist.new_request")} — ${patientName(e)} (${t(`urgency.${e.urgency}`)})`, "warn");
            beep();
          }
        } else if (before !== e.status) {
          fresh.set(e.id, "changed");
        }
        // A status reached between two polls still alerts, even on a row not seen before.
        // What is now the user's to do is the server's `commands` (docs/rooms.md).
        if (before !== e.status) {
          if (e.commands?.includes("protocol_ack")) {
            toast(`${t("worklist.protocol_arrived")} — ${patientName(e)}`, "warn", 30000);
            beep();
          }
          if (e.commands?.includes("acknowledge")) {
            toast(`${t("worklist.report_arrived")} — ${patientName(e)}`, "warn", 30000);
            beep();
          }
        }
      }
    }
    known = next;
  }

  let stopped = false;
  let inflight = false;
  async function load() {
    if (inflight || stopped) return;
    inflight = true;
    try {
      const data = await api.exams({ limit: 300 });
      if (stopped) return;
      exams = data.exams;
      notice(exams);
      render();
    } catch (err) {
      if (err.status !== 401) count.textContent = t("worklist.load_failed");
    } finally {
      inflight = false;
    }
  }

  const onNotify = () => load();
  app.notifications.addEventListener("notification", onNotify);
  const poll = setInterval(load, POLL_MS);
  const tick = setInterval(() => tickCountdowns(tbody), 1000);
  load();
  return () => {
    stopped = true;
    clearInterval(poll);
    clearInterval(tick);
    app.notifications.removeEventListener("notification", onNotify);
  };
}
