// The report panel: the radiologist writes from a template with autosave, flags a
// critical finding and signs (the password is asked again); everyone else reads the
// signed report. Works from the report API, or from the room's report events.
import { api } from "./api.js";
import { h, clear, debounce, beep } from "./dom.js";
import { t, formatTime, formatDateTime, errorText } from "./i18n.js";
import { signDialog } from "./sign.js";
import { can, runCommand } from "./actions.js";
import { strokeForm } from "./strokeform.js";

const FIELDS = ["indication", "technique", "findings", "conclusion"];
const TEMPLATE_FIELDS = ["technique", "findings", "conclusion", "dose"];
// Modalities that irradiate: the report states the dose (the server refuses to sign without).
const DOSE_MODALITIES = ["CT", "CR", "DX"];
// A template's "fill in here": "[…]" or "[...]", or an ellipsis standing alone as a word
// (older templates). The server refuses to sign a report holding one (422
// incomplete_report, docs/reports.md); the same rule here names the fields at once.
const PLACEHOLDER = /\[\s*(?:…|\.{3})\s*\]|(?<!\S)(?:…|\.{3})(?!\S)/u;

/** Where the dose line came from and how it compares with the site's diagnostic
 * reference level (docs/reports.md "The dose from the scanner"); null without a dose SR. */
export function doseNote(dose) {
  if (!dose) return null;
  const ref = dose.reference;
  return h("p", { id: "report-dose-note", class: ref?.above ? "field-error dose-above" : "small muted", role: ref?.above ? "alert" : null },
    t("report.dose_from_scanner", { text: dose.text || "-" }),
    ref ? ` — ${t(ref.above ? "report.dose_above" : "report.dose_below", { source: ref.source })}` : null);
}

/** The names of the fields whose text still holds a template placeholder. */
export function placeholdersLeft(values) {
  return [...FIELDS, "dose"].filter((f) => typeof values[f] === "string" && PLACEHOLDER.test(values[f]));
}

export class ReportPanel {
  constructor(room) {
    this.room = room;
    this.report = null; // {indication, technique, findings, conclusion, critical, sha256?, signed_at?}
    this.templates = null;
    this.body = h("div", { class: "report-body" });
    // The key images and measurements saved into the study from the viewer (KO, SR).
    this.keyObjects = h("ul", { class: "key-objects", id: "report-key-objects" });
    this.keyBox = h("div", { class: "report-section", hidden: true },
      h("h3", {}, t("report.key_objects")), this.keyObjects);
    this.el = h("section", { class: "card report-card", id: "report-panel", "aria-labelledby": "report-title" },
      h("h2", { id: "report-title" }, t("report.title")), this.body, this.keyBox);
    this.save = debounce(() => this.persist(), 1200);
    this.loaded = false;
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    try {
      const r = await api.report(this.room.examId);
      if (r.status === "none") this.report = r.template ? { ...r.template, fromTemplate: true } : null;
      else if (r.in_progress) this.report = null; // site staff only learn a draft exists
      else this.report = { ...r, signed: r.status === "signed" };
    } catch {
      // No report yet (or the route is not there): the events will tell.
    }
    this.loading = false;
    this.loaded = true;
    this.render();
    this.loadKeyObjects();
  }

  /** The KO and SR documents of the exam's study, each linked as its DICOM file (WADO-URI). */
  async loadKeyObjects() {
    let docs = [];
    try {
      docs = (await api.keyObjects(this.room.examId)).documents || [];
    } catch {
      return;
    }
    const study = this.room.exam?.study_instance_uid || "";
    clear(this.keyObjects, ...docs.map((d) => {
      const q = new URLSearchParams({
        requestType: "WADO", studyUID: study, seriesUID: d.series_instance_uid, objectUID: d.sop_instance_uid, contentType: "application/dicom",
      });
      return h("li", { dataset: { kind: d.kind, sop: d.sop_instance_uid } },
        `${t(d.kind === "key_images" ? "report.ko" : "report.sr")} · ${formatDateTime(new Date(d.stored_at).toISOString())} · `,
        h("a", { href: `/dicomweb/wado?${q}`, download: `${d.kind}-${d.sop_instance_uid}.dcm` }, t("report.download")));
    }));
    this.keyBox.hidden = docs.length === 0;
  }

  async loadTemplates() {
    try {
      const data = await api.reportTemplates(this.room.exam?.modality, this.room.exam?.body_part);
      this.templates = data.templates || data || [];
    } catch {
      this.templates = [];
    }
    this.render();
  }

  onEvent(e) {
    if (e.kind === "report.draft" && !this.editing()) this.report = { ...this.report, ...e.body };
    if (e.kind === "report.signed") {
      // The event carries the hash and the flag; the content is read from the API.
      if (e.body?.critical && this.room.me.role === "urgentist") beep();
      this.form = null;
      this.load();
    }
    if (e.kind === "exam.delivered") this.load();
  }

  editing() {
    return can(this.room, "report_draft");
  }

  render() {
    const exam = this.room.exam;
    if (!exam) return;
    if (!this.loaded) {
      clear(this.body, h("p", { class: "muted" }, t("app.loading")));
      this.load();
      return;
    }
    const signed = ["reported", "delivered"].includes(exam.status);
    this.el.hidden = this.room.me.role === "manipulator" && !signed;
    if (this.editing()) return this.renderEditor(exam);
    if (signed && this.report) return this.renderSigned(exam);
    clear(this.body, h("p", { class: "muted" }, t(signed ? "report.loading" : "report.not_yet")));
  }

  renderSigned(exam) {
    const r = this.report;
    const toAck = can(this.room, "acknowledge");
    if (r.critical && toAck) {
      this.room.banner("critical", t("report.critical_banner"), "danger");
    } else {
      this.room.unbanner("critical");
    }
    clear(this.body,
      r.critical ? h("p", { class: "critical-flag", role: "alert" }, `⚠ ${t("report.critical")}`) : null,
      ...[...FIELDS, "dose"].map((f) => r[f] ? h("div", { class: "report-section" }, h("h3", {}, t(`report.${f}`)), h("p", { class: "report-text" }, r[f]),
        f === "dose" ? doseNote(r.radiation_dose) : null) : null),
      h("p", { class: "small muted", id: "report-signed-line" }, `✓ ${t("report.signed_by", {
        name: r.signer?.name || "?", rpps: r.signer?.rpps ? ` (RPPS ${r.signer.rpps})` : "", at: r.signed_at ? formatDateTime(r.signed_at) : "?",
      })}`,
        r.sha256 ? h("code", { class: "sha" }, ` SHA-256 ${r.sha256.slice(0, 16)}…`) : null),
      exam.status === "delivered" ? h("p", { class: "ok-line", id: "report-delivered" }, `✓ ${t("report.delivered")}`) : null,
      toAck ? this.ackForm(r) : null);
  }

  /** The urgentist's acknowledgement; a critical finding must be acknowledged explicitly. */
  ackForm(r) {
    const box = r.critical ? h("input", { type: "checkbox", id: "critical-ack" }) : null;
    const err = h("p", { class: "field-error", role: "alert" });
    const btn = h("button", { type: "submit", class: "btn btn-primary btn-big", id: "acknowledge-report" }, t("room.acknowledge"));
    const form = h("form", { class: "ack-form" },
      box ? h("div", { class: "field field-check critical-check" }, box, h("label", { for: "critical-ack" }, t("report.critical_ack"))) : null,
      err, btn);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (box && !box.checked) {
        err.textContent = t("report.critical_ack_needed");
        box.focus();
        return;
      }
      btn.disabled = true;
      await runCommand(this.room, "acknowledge", box ? { critical_acknowledged: true } : undefined, "room.acknowledged");
      btn.disabled = false;
    });
    return form;
  }

  renderEditor(exam) {
    if (this.templates === null) {
      this.templates = [];
      this.loadTemplates();
    }
    if (this.form && this.body.contains(this.form)) {
      this.signBtn.disabled = !can(this.room, "report_sign");
      this.signHint.hidden = can(this.room, "report_sign");
      return;
    }
    const r = this.report || {};
    this.inputs = {};
    // The structured stroke report, open for a stroke alert (or a draft that has one).
    // The findings and conclusion the radiologist has not typed are written from it by
    // the server (sent blank), and shown back after the save.
    this.typed = { findings: false, conclusion: false };
    this.stroke = exam.stroke || r.stroke ? strokeForm(r.stroke, () => this.strokeChanged()) : null;
    const pick = h("select", { id: "report-template" }, h("option", { value: "" }, t("report.template_pick")),
      ...this.templates.map((tp, i) => h("option", { value: String(i) }, tp.title || tp.name || tp.id)));
    pick.addEventListener("change", () => {
      const tp = this.templates[Number(pick.value)];
      if (!tp || pick.value === "") return;
      for (const f of TEMPLATE_FIELDS) if (tp[f] && this.inputs[f]) this.inputs[f].value = tp[f];
      this.changed();
    });
    const names = DOSE_MODALITIES.includes(exam.modality) || r.radiation_dose ? [...FIELDS, "dose"] : FIELDS;
    const fields = names.map((f) => {
      const ta = h("textarea", { id: `report-${f}`, rows: f === "findings" ? 8 : f === "dose" ? 1 : 3, maxlength: f === "dose" ? 2000 : 20000 });
      ta.value = r[f] ?? (f === "indication" ? exam.clinical_question : f === "technique" ? exam.protocol?.text || "" : "");
      ta.addEventListener("input", () => {
        if (f in this.typed) this.typed[f] = true;
        this.changed();
      });
      this.inputs[f] = ta;
      return h("div", { class: "field" }, h("label", { for: `report-${f}` }, t(`report.${f}`)), ta,
        f === "dose" ? doseNote(r.radiation_dose) : null);
    });
    this.critical = h("input", { type: "checkbox", id: "report-critical" });
    this.critical.checked = Boolean(r.critical);
    this.critical.addEventListener("change", () => this.changed());
    this.saveState = h("span", { class: "small muted", id: "report-save-state", role: "status", "aria-live": "polite" });
    this.signBtn = h("button", { type: "button", class: "btn btn-primary", id: "report-sign" }, t("report.sign"));
    this.signBtn.disabled = !can(this.room, "report_sign");
    this.signHint = h("span", { class: "small muted", hidden: can(this.room, "report_sign") }, t("report.sign_wait"));
    this.signBtn.addEventListener("click", () => this.sign());
    this.signError = h("p", { class: "field-error", id: "report-error", role: "alert" });
    this.form = h("form", { class: "report-form", novalidate: true },
      this.templates.length ? [h("label", { for: "report-template" }, t("report.template")), pick] : null,
      this.stroke ? this.stroke.el : null,
      fields,
      h("div", { class: "field field-check critical-check" }, this.critical, h("label", { for: "report-critical" }, t("report.critical_label"))),
      this.signError,
      h("div", { class: "form-actions" }, this.saveState, this.signHint, this.signBtn));
    this.form.addEventListener("submit", (ev) => ev.preventDefault());
    clear(this.body, this.form);
    // The dose line shown was written from the scanner's dose report: save it as the draft's.
    if (r.dose_filled) this.changed();
  }

  values() {
    const out = { critical: this.critical.checked };
    for (const [f, input] of Object.entries(this.inputs)) out[f] = input.value;
    // The structured stroke report (docs/stroke.md): the form's, else the one saved.
    if (this.stroke) out.stroke = this.stroke.value();
    else if (this.report?.stroke) out.stroke = this.report.stroke;
    return out;
  }

  strokeChanged() {
    for (const f of ["findings", "conclusion"]) {
      if (!this.typed[f] && this.inputs[f]) this.inputs[f].value = "";
    }
    this.changed();
  }

  changed() {
    this.dirty = true;
    this.saveState.textContent = t("report.unsaved");
    this.save();
  }

  async persist() {
    if (!this.dirty || !this.editing()) return true;
    const values = this.values();
    this.dirty = false;
    this.saveState.textContent = t("report.saving");
    try {
      await api.saveReport(this.room.examId, values);
      this.report = { ...this.report, ...values };
      const blank = ["findings", "conclusion"].filter((f) => values.stroke && this.inputs[f] && !values[f].trim());
      if (blank.length) {
        // The server wrote them from the structured report: show its text.
        const saved = await api.report(this.room.examId);
        for (const f of blank) {
          if (!this.inputs[f].value.trim()) this.inputs[f].value = saved[f] || "";
          this.report[f] = saved[f];
        }
      }
      this.saveState.textContent = t("report.saved_at", { time: formatTime(new Date().toISOString()) });
      return true;
    } catch (err) {
      this.dirty = true;
      this.saveState.textContent = `${t("report.save_failed")} (${errorText(err)})`;
      this.save();
      return false;
    }
  }

  /** Name the fields still holding a template placeholder; false when there are some. */
  checkPlaceholders() {
    const left = placeholdersLeft(this.values());
    for (const [f, input] of Object.entries(this.inputs)) {
      if (left.includes(f)) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    this.signError.textContent = left.length
      ? t("report.placeholders_left", { fields: left.map((f) => t(`report.${f}`)).join(", ") })
      : "";
    if (left.length) this.inputs[left[0]].focus();
    return left.length === 0;
  }

  async sign() {
    if (!this.checkPlaceholders()) return;
    this.save.cancel();
    this.dirty = true;
    if (!(await this.persist())) return;
    signDialog(this.room, this.values(), (result) => {
      this.report = { ...this.values(), ...(result?.report || {}), sha256: result?.sha256 || result?.report?.sha256, signed: true };
      this.form = null;
      this.room.refresh();
    });
  }

  destroy() {
    this.save.flush();
  }
}
