// The reconciliation queue (docs/dicomweb.md "Filing and reconciliation"): images
// that were kept aside instead of filed, by series, with why. A radiographer (their
// site's) or a coordinator files a series into an exam or discards it. The list
// reloads when the personal channel says something was added or resolved.
import { api, ApiError } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const FILEABLE = ["accepted", "protocoled", "acquiring", "images_complete", "reported", "delivered"];

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = data?.error || {};
    throw new ApiError(resp.status, e.code || `http_${resp.status}`, e.message);
  }
  return data;
}

const patientName = (name) => (name || "").replaceAll("^", " ").trim();

function reasonText(group) {
  const key = `reconciliation.reason.${group.reason}`;
  return t(key) !== key ? t(key) : group.message;
}

function examLabel(exam) {
  const patient = exam.patient ? patientName(exam.patient.name) : patientName(exam.patient_name);
  return `${patient} — ${exam.accession_number} (${t(`status.${exam.status}`)})`;
}

export function mountReconciliation(container, app) {
  const list = h("ul", { class: "reconciliation-list", id: "reconciliation-list" });
  const empty = h("p", { class: "muted", id: "reconciliation-empty", hidden: true }, t("reconciliation.empty"));
  container.append(
    h("section", { class: "card", "aria-labelledby": "reconciliation-title" },
      h("h1", { id: "reconciliation-title" }, t("reconciliation.title")),
      h("p", { class: "small muted" }, t("reconciliation.intro")),
      empty, list));
  let exams = [];
  let stopped = false;

  async function loadExams() {
    try {
      const body = await api.exams({ status: FILEABLE });
      exams = Array.isArray(body) ? body : body?.exams || body?.items || [];
    } catch {
      exams = [];
    }
  }

  function row(group) {
    const select = h("select", { "aria-label": t("reconciliation.exam"), class: "reconciliation-exam" },
      h("option", { value: "" }, t("reconciliation.exam_pick")));
    const known = new Set();
    for (const exam of [group.candidate_exam, ...exams]) {
      if (!exam || known.has(exam.id) || !FILEABLE.includes(exam.status)) continue;
      known.add(exam.id);
      select.append(h("option", { value: exam.id }, examLabel(exam)));
    }
    if (group.candidate_exam && known.has(group.candidate_exam.id)) select.value = group.candidate_exam.id;
    const why = h("input", { type: "text", maxlength: "2000", "aria-label": t("reconciliation.discard_reason"),
      placeholder: t("reconciliation.discard_reason"), class: "reconciliation-why" });
    const act = async (verb, body, done) => {
      try {
        const out = await request("POST", `/api/reconciliation/${encodeURIComponent(group.id)}/${verb}`, body);
        toast(done(out), "info", 5000);
        await refresh();
      } catch (err) {
        toast(t("reconciliation.error", { message: err.message || err.code }), "warn", 8000);
      }
    };
    const fileButton = h("button", { type: "button", class: "btn", onclick: () => {
      if (select.value) act("file", { exam_id: select.value }, (o) => t("reconciliation.filed", { n: o.filed.length }));
      else select.focus();
    } }, t("reconciliation.file"));
    const discardButton = h("button", { type: "button", class: "btn danger", onclick: () => {
      if (why.value.trim()) act("discard", { reason: why.value.trim() }, () => t("reconciliation.discarded"));
      else why.focus();
    } }, t("reconciliation.discard"));
    const seen = group.seen || {};
    const who = group.uploader ? group.uploader.display_name : group.source;
    return h("li", { class: "reconciliation-item", dataset: { id: group.id, reason: group.reason } },
      h("p", {}, h("strong", {}, `${group.modality || "?"} — ${t("reconciliation.count", { n: group.count })}`),
        " · ", h("span", { class: "reconciliation-reason warn-line" }, reasonText(group))),
      h("p", { class: "small" },
        `${t("reconciliation.seen")} : ${t("reconciliation.patient")} ${patientName(seen.patient_name) || "—"}`,
        ` (${seen.patient_id || "—"}, ${seen.patient_birth_date || "—"}, ${seen.patient_sex || "—"}) · `,
        `${t("reconciliation.accession")} ${seen.accession_number || "—"}`),
      h("p", { class: "small muted" },
        t("reconciliation.received", { at: new Date(group.last_received_at).toLocaleString() }), " · ",
        t("reconciliation.from", { who })),
      group.candidate_exam
        ? h("p", { class: "small" }, `${t("reconciliation.candidate")} : ${examLabel(group.candidate_exam)}`)
        : null,
      h("div", { class: "reconciliation-actions" }, select, fileButton, why, discardButton));
  }

  async function refresh() {
    if (stopped) return;
    let body;
    try {
      body = await request("GET", "/api/reconciliation");
    } catch (err) {
      clear(list);
      empty.hidden = false;
      empty.textContent = t("reconciliation.error", { message: err.message || err.code });
      return;
    }
    clear(list, ...body.groups.map(row));
    empty.hidden = body.groups.length > 0;
    empty.textContent = t("reconciliation.empty");
  }

  const onNotification = (ev) => {
    if ((ev.detail?.kind || "").startsWith("reconciliation.")) refresh();
  };
  app.notifications.addEventListener("notification", onNotification);
  loadExams().then(refresh);
  return () => {
    stopped = true;
    app.notifications.removeEventListener("notification", onNotification);
  };
}
