// Exam status, urgency and deadline presentation shared by the worklist and the room.
import { h } from "./dom.js";
import { t, formatCountdown, formatTime } from "./i18n.js";

export const STEPS = [
  ["requested", "requested_at"],
  ["accepted", "accepted_at"],
  ["protocoled", "protocoled_at"],
  ["acquiring", "protocol_acknowledged_at"],
  ["images_complete", "images_complete_at"],
  ["reported", "reported_at"],
  ["delivered", "delivered_at"],
];

export const URGENCY_RANK = { emergency: 0, urgent: 1, scheduled: 2 };
export const ACTIVE = ["requested", "accepted", "protocoled", "acquiring", "images_complete", "reported"];

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, t(`status.${status}`));
}

export function urgencyBadge(urgency) {
  return h("span", { class: `badge urgency-${urgency}` }, t(`urgency.${urgency}`));
}

export function patientName(exam) {
  return (exam.patient?.name || "").replaceAll("^", " ").trim();
}

/** The deadline that matters now: {label, due, warnAt} or null. */
export function currentDeadline(exam) {
  const d = exam.deadlines || {};
  if (d.accept_by) {
    const due = Date.parse(d.accept_by);
    return { label: t("deadline.accept"), due, warnAt: due - 120000 };
  }
  if (d.report_due_at) {
    const due = Date.parse(d.report_due_at);
    const warnAt = d.report_warning_at ? Date.parse(d.report_warning_at) : due - 900000;
    return { label: t("deadline.report"), due, warnAt };
  }
  return null;
}

/** ok / warn / late: the colour of a countdown as the deadline nears. */
export function deadlineLevel(deadline, now = Date.now()) {
  if (now >= deadline.due) return "late";
  if (now >= deadline.warnAt) return "warn";
  return "ok";
}

/** A countdown element refreshed by `tickCountdowns` (one timer for the whole page). */
export function countdown(exam) {
  const deadline = currentDeadline(exam);
  if (!deadline) return h("span", { class: "countdown none" }, "—");
  const el = h("span", { class: "countdown", role: "timer", dataset: { due: deadline.due, warn: deadline.warnAt } });
  el.title = `${deadline.label} ${formatTime(new Date(deadline.due).toISOString())}`;
  paint(el);
  return el;
}

function paint(el) {
  const due = Number(el.dataset.due);
  const warnAt = Number(el.dataset.warn);
  const now = Date.now();
  const level = deadlineLevel({ due, warnAt }, now);
  el.className = `countdown level-${level}`;
  const remaining = (due - now) / 1000;
  el.textContent = formatCountdown(remaining);
  el.setAttribute("aria-label", `${el.title} — ${level === "late" ? t("deadline.late") : t("deadline.left")} ${formatCountdown(remaining)}`);
}

export function tickCountdowns(root = document) {
  for (const el of root.querySelectorAll(".countdown[data-due]")) paint(el);
}

/** The status timeline of the room header, with each step's time. */
export function timeline(exam) {
  const times = exam.times || {};
  const reached = new Set();
  const order = STEPS.map(([s]) => s);
  const idx = order.indexOf(exam.status);
  order.forEach((s, i) => {
    if (i <= idx) reached.add(s);
  });
  const list = h("ol", { class: "timeline", "aria-label": t("room.timeline") });
  for (const [status, key] of STEPS) {
    const done = reached.has(status);
    const current = status === exam.status;
    list.append(h("li", {
      class: `step${done ? " done" : ""}${current ? " current" : ""}`,
      "aria-current": current ? "step" : undefined,
    }, h("span", { class: "step-name" }, t(`status.${status}`)),
    h("span", { class: "step-time" }, times[key] ? formatTime(times[key]) : "")));
  }
  if (exam.status === "cancelled") {
    list.append(h("li", { class: "step cancelled current", "aria-current": "step" },
      h("span", { class: "step-name" }, t("status.cancelled")),
      h("span", { class: "step-time" }, formatTime(times.cancelled_at))));
  }
  return list;
}
