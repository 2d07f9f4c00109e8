// The exam room: header (patient, exam, timeline, deadlines, actions), presence,
// banners, and the panels (chat, protocol, images, report). One RoomClient feeds them.
import { deliveryState } from "./deliveries.js";
import { api } from "./api.js";
import { CLOSE } from "./constants.js";
import { h, clear, toast, debounce } from "./dom.js";
import { t, age, formatDate, getLang, examLabel, reasonText } from "./i18n.js";
import { RoomClient } from "./roomclient.js";
import { strokeClock, tickStrokeClock } from "./strokeclock.js";
import { statusBadge, urgencyBadge, patientName, countdown, currentDeadline, timeline, tickCountdowns } from "./status.js";
import { ChatPanel } from "./chat.js";
import { ProtocolPanel } from "./protocol.js";
import { ImagesPanel } from "./images.js";
import { ReportPanel } from "./report.js";
import { libraryLoaded, mark, preloadViewer } from "./imaging.js";
import { askFirstImage, firstImageSettled, preloadLibrary } from "./firstimage.js";
import { actionsFor } from "./actions.js";
import { createCallControls } from "./call.js";

const STATUS_KINDS = new Set([
  "exam.accepted", "protocol.proposed", "protocol.acknowledged", "exam.images_complete",
  "report.signed", "exam.delivered", "exam.cancelled", "escalation.raised",
  "patient.updated", "patient.merged",
]);

/** The identity received from the hospital, its strict traits first (docs/patients.md). */
function identityBlock(p) {
  return h("p", { class: `identity identity-${p.status}`, id: "room-identity" },
    h("span", { class: "badge identity-status" }, t(`identity.${p.status}`)),
    ` ${t("identity.birth_name")} : `, h("strong", {}, p.birth_name),
    ` · ${t("identity.first_names")} : ${p.first_names} · ${p.sex} · ${formatDate(p.birth_date)}`,
    p.birthplace_code ? ` · ${t("identity.birthplace")} ${p.birthplace_code}` : null,
    p.used_name ? ` · ${t("identity.used_name")} : ${p.used_name}` : null,
    p.ins ? ` · ${t("identity.ins")} ${p.ins}` : null);
}

export function mountRoom(main, app, examId) {
  mark("room:mount");
  // The first image first (asked already when the page was opened on this room), the
  // library downloaded once it is decoded and evaluated once it is on screen.
  if (!libraryLoaded()) {
    askFirstImage(examId).finally(preloadLibrary);
  }
  preloadViewer();
  const me = app.me;
  // `settled`: the first image is on screen or will not be (firstImageSettled); until
  // then the room draws its header and its images panel only (see renderAll).
  const room = { app, me, examId, exam: null, client: new RoomClient(examId), settled: false };
  const head = h("header", { class: "room-head card", id: "room-head", "aria-live": "polite" });
  const banners = h("div", { class: "banners", id: "room-banners", "aria-live": "assertive" });
  // Where the signed report stands in the hospital's systems (docs/hl7.md "Outbound").
  const deliveries = h("p", { class: "deliveries-line small", id: "room-deliveries", role: "status", hidden: true });
  const presence = h("ul", { class: "presence", id: "presence", "aria-label": t("room.present") });
  const conn = h("span", { class: "conn-state", id: "room-conn", role: "status" });
  room.chat = new ChatPanel(room);
  room.protocol = new ProtocolPanel(room);
  room.images = new ImagesPanel(room);
  room.report = new ReportPanel(room);
  // Voice and video through the server's relay (call.js, from the calls branch).
  const callCard = h("section", { class: "card call-card", "aria-labelledby": "call-title" },
    h("h2", { id: "call-title" }, t("room.call")));
  const call = createCallControls(callCard, room.client, { lang: getLang(), examId });
  const side = h("div", { class: "room-side" },
    h("section", { class: "card presence-card", "aria-labelledby": "presence-title" },
      h("div", { class: "card-head" }, h("h2", { id: "presence-title" }, t("room.present")), conn), presence),
    room.protocol.el, callCard, room.chat.el);
  const layout = h("div", { class: `room-grid role-${me.role}` }, side, room.images.el, room.report.el);
  main.append(h("section", { class: "view room-view", "aria-label": t("room.title") }, head, banners, deliveries, layout));

  function renderDeliveries(items) {
    deliveries.hidden = !items.length;
    clear(deliveries, h("span", { class: "muted" }, `${t("room.deliveries")} : `),
      ...items.map((d, i) => h("span", { class: `delivery state-${d.state}`, dataset: { state: d.state } },
        `${i ? " · " : ""}${d.destination?.name || "?"} ${d.message_type.split("^")[0]} ${deliveryState(d)}`)));
  }
  async function loadDeliveries() {
    try {
      const resp = await fetch(`/api/exams/${encodeURIComponent(examId)}/deliveries`,
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (resp.ok) renderDeliveries((await resp.json()).deliveries);
    } catch {
      /* the next delivery frame brings them */
    }
  }

  function renderHead() {
    const e = room.exam;
    if (!e) return;
    document.title = `${patientName(e)} · ${examLabel(e.modality, e.body_part)} — Téléimagerie`;
    clear(head,
      h("div", { class: "room-id" },
        h("a", { href: "#/worklist", class: "back", "aria-label": t("room.back") }, "←"),
        h("div", {},
          h("h1", { id: "room-patient" }, patientName(e),
            h("span", { class: "muted patient-meta" }, ` ${e.patient.sex} · ${age(e.patient.birth_date)} ${t("unit.years")} · ${formatDate(e.patient.birth_date)} · ${e.patient.id}`)),
          e.patient.identity ? identityBlock(e.patient.identity) : null,
          h("p", { class: "exam-line" }, urgencyBadge(e.urgency), " ", statusBadge(e.status),
            h("strong", {}, ` ${examLabel(e.modality, e.body_part)}`),
            h("span", { class: "muted" }, ` · ${e.establishment?.name || ""} · ${t("room.accession")} ${e.accession_number}`)),
          h("p", { class: "question" }, h("span", { class: "muted" }, `${t("room.question")} `), e.clinical_question),
          e.contraindications ? h("p", { class: "contra" }, `⚠ ${t("room.contraindications")} ${e.contraindications}`) : null,
          strokeClock(e))),
      currentDeadline(e)
        ? h("div", { class: "room-deadline" }, h("span", { class: "muted small" }, currentDeadline(e).label), countdown(e))
        : h("div", { class: "room-deadline" }),
      timeline(e),
      h("div", { class: "room-actions", id: "room-actions" }, actionsFor(room)));
    tickStrokeClock(head);
  }

  // The header (the patient, the exam) and the images panel, which opens the viewer,
  // first; the protocol and the report, with their requests, once the first image is
  // settled: before, they took the main thread and the server from that image.
  function renderAll() {
    layout.classList.toggle("has-report", ["reported", "delivered"].includes(room.exam.status));
    renderHead();
    room.images.render();
    if (!room.settled) return;
    room.protocol.render();
    room.report.render();
  }

  let refreshFailures = 0;
  room.refresh = debounce(async () => {
    try {
      room.exam = await api.exam(examId);
      refreshFailures = 0;
      renderAll();
    } catch (err) {
      if (err.status === 404) toast(t("room.not_found"), "danger");
      // A busy or restarting server: the header must not stay stale, so try again.
      else if (err.status !== 401 && err.status !== 403 && refreshFailures++ < 8) room.refresh();
    }
  }, 250);

  room.unbanner = (key) => banners.querySelector(`[data-key="${key}"]`)?.remove();
  room.banner = (key, text, kind = "warn") => {
    let el = banners.querySelector(`[data-key="${key}"]`);
    if (!el) {
      el = h("div", { class: `banner banner-${kind}`, dataset: { key }, role: "alert" });
      banners.append(el);
    }
    clear(el, h("span", {}, text), h("button", {
      type: "button", class: "btn btn-ghost btn-small", "aria-label": t("room.dismiss"), onclick: () => el.remove(),
    }, "×"));
    return el;
  };

  const client = room.client;
  let replayUntil = 0;
  let missed = 0;
  client.addEventListener("state", (ev) => {
    conn.textContent = t(`conn.${ev.detail}`);
    conn.className = `conn-state conn-${ev.detail}`;
    document.getElementById("net-status").textContent = ev.detail === "online" ? "" : t(`conn.${ev.detail}`);
    room.chat.setOnline(ev.detail === "online");
  });
  client.addEventListener("welcome", (ev) => {
    mark("room:welcome");
    const w = ev.detail;
    room.exam = w.exam;
    renderAll();
    renderPresence(w.presence);
    loadDeliveries();
    replayUntil = w.resumed ? w.last_seq : 0;
    missed = 0;
    if (w.resumed && w.last_seq > w.since) room.chat.markMissedStart();
    if (w.resumed && w.last_seq <= w.since) room.banner("missed", t("room.reconnected_nothing"), "ok");
  });
  client.addEventListener("event", (ev) => {
    const e = ev.detail;
    const isMissed = replayUntil && e.seq <= replayUntil;
    if (isMissed) {
      missed += 1;
      room.banner("missed", t("room.missed", { n: missed }), "info");
    }
    room.chat.onEvent(e, isMissed);
    room.protocol.onEvent(e, isMissed);
    room.images.onEvent(e);
    room.report.onEvent(e);
    if (e.kind === "escalation.raised") {
      const b = e.body || {};
      room.banner(`esc-${e.seq}`, `${t("room.escalation")} (${t("room.level")} ${b.level ?? "?"}) — ${reasonText(b.reason)}`, "danger");
    }
    if (STATUS_KINDS.has(e.kind) && room.exam && e.seq > (room.exam.last_seq || 0)) room.refresh();
  });
  client.addEventListener("ack", (ev) => room.chat.onAck(ev.detail));
  client.addEventListener("delivery", (ev) => renderDeliveries(ev.detail.deliveries || []));
  client.addEventListener("presence", (ev) => renderPresence(ev.detail.presence));
  client.addEventListener("typing", (ev) => room.chat.onTyping(ev.detail.user));
  client.addEventListener("error", (ev) => {
    if (ev.detail?.code === "rate_limited") toast(t("room.rate_limited"), "warn");
  });
  let takenBy = null;
  client.addEventListener("access.lost", (ev) => {
    takenBy = ev.detail.by?.display_name || "?";
  });
  // The server's log is behind what this view shows (a restored database): mount the
  // room again, empty, and let the replay from seq 1 fill it.
  client.addEventListener("reset", () => app.navigate(location.hash));
  client.addEventListener("refused", (ev) => {
    const code = ev.detail;
    if (code === CLOSE.SESSION_ENDED) {
      app.sessionEnded();
      return;
    }
    const title = code === CLOSE.NO_SUCH_EXAM ? t("room.not_found") : takenBy ? t("room.taken", { name: takenBy }) : t("room.forbidden");
    main.replaceChildren(h("section", { class: "view card" }, h("h1", {}, title),
      h("a", { href: "#/worklist", class: "btn" }, t("room.back"))));
  });

  function renderPresence(list) {
    const seen = new Map();
    for (const m of list || []) seen.set(`${m.user.id}`, m);
    clear(presence, [...seen.values()].map((m) => h("li", { class: `who role-${m.role}` },
      h("span", { class: "dot", "aria-hidden": "true" }), m.user.display_name, h("span", { class: "muted small" }, ` · ${t(`role.${m.role}`)}`))));
  }

  // The header at once (the welcome brings the same exam): the first image is placed
  // below it, where it stays when the welcome comes.
  api.exam(examId).then((exam) => {
    if (room.exam) return;
    room.exam = exam;
    renderAll();
  }).catch(() => {});

  const tick = setInterval(() => {
    tickCountdowns(head);
    tickStrokeClock(head);
  }, 1000);
  // The room's socket (its welcome, the events replayed into the chat, presence) and the
  // other panels once the first image is on screen: their work came before that image
  // on the main thread (docs/frontend.md "The first image before the viewer").
  let left = false;
  firstImageSettled().then(() => {
    if (left) return;
    room.settled = true;
    if (room.exam) renderAll();
    room.chat.restoreOutbox();
    mark("room:connect");
    client.connect();
  });
  return () => {
    left = true;
    clearInterval(tick);
    call.destroy();
    client.close();
    room.images.destroy();
    room.report.destroy();
    document.getElementById("net-status").textContent = "";
  };
}
