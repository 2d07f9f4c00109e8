// The urgentist's exam request (docs/api.md POST /api/exams): the fields a French
// teleradiology request needs, validated here for clear messages and by the server.
import { api } from "./api.js";
import { clear, debounce, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const BODY_PARTS = ["HEAD", "NECK", "CSPINE", "CHEST", "ABDOMEN", "PELVIS", "CAP", "WHOLEBODY", "SPINE", "EXTREMITY"];

/** "Dupont Jeanne" -> "DUPONT^Jeanne" (DICOM PN: family name first, in capitals). */
function dicomName(text) {
  const [family, ...given] = text.trim().split(/[\s,^]+/);
  return given.length ? `${family.toUpperCase()}^${given.join(" ")}` : family.toUpperCase();
}

function field(id, label, control, hint) {
  const err = h("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
  control.id = id;
  control.setAttribute("aria-describedby", `${id}-error${hint ? ` ${id}-hint` : ""}`);
  return h("div", { class: "field", dataset: { field: id } },
    h("label", { for: id }, label, control.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    control, err);
}

function select(name, options, required = true) {
  return h("select", { name, required },
    h("option", { value: "" }, t("form.choose")),
    ...options.map(([value, label]) => h("option", { value }, label)));
}

/** An identity received from the hospital, as identity-vigilance asks: the strict
 * traits (birth name, first names, sex, birth date) and the status (docs/patients.md). */
export function identityLine(p) {
  return `${p.birth_name} ${p.first_names} · ${p.sex} · ${p.birth_date} · ${p.ipp} · ${t(`identity.${p.status}`)}`;
}

export function mountRequestForm(main, app) {
  let identityId = null;
  let draftId = null;
  const c = {
    patient_id: h("input", { name: "patient_id", required: true, maxlength: 64, autocomplete: "off" }),
    patient_name: h("input", { name: "patient_name", required: true, maxlength: 200, autocomplete: "off" }),
    birth_date: h("input", { name: "birth_date", type: "date", required: true, max: new Date().toISOString().slice(0, 10) }),
    sex: select("sex", ["F", "M", "O", "U"].map((s) => [s, t(`sex.${s}`)])),
    modality: select("modality", ["CT", "MR", "CR", "DX"].map((m) => [m, t(`modality.${m}`)])),
    body_part: select("body_part", BODY_PARTS.map((b) => [b, t(`body.${b}`)])),
    urgency: select("urgency", ["emergency", "urgent", "scheduled"].map((u) => [u, t(`urgency.${u}`)])),
    clinical_question: h("textarea", { name: "clinical_question", required: true, rows: 4, maxlength: 4000 }),
    contraindications: h("textarea", { name: "contraindications", rows: 2, maxlength: 2000 }),
    consent: h("input", { name: "consent", type: "checkbox", required: true }),
  };
  // The stroke alert (docs/stroke.md): a flag with the time of onset or "last seen well".
  const stroke = {
    on: h("input", { id: "stroke-alert", type: "checkbox" }),
    kind: h("select", { id: "stroke-kind" },
      h("option", { value: "witnessed" }, t("stroke.kind.witnessed")),
      h("option", { value: "last_seen_well" }, t("stroke.kind.last_seen_well"))),
    onset: h("input", { id: "stroke_onset", type: "datetime-local", "aria-describedby": "stroke_onset-error" }),
  };
  const strokeDetail = h("div", { class: "grid-2 stroke-detail", hidden: true },
    h("div", { class: "field" }, h("label", { for: "stroke-kind" }, t("stroke.kind")), stroke.kind),
    h("div", { class: "field", dataset: { field: "stroke_onset" } },
      h("label", { for: "stroke_onset" }, t("stroke.onset")), stroke.onset,
      h("p", { class: "field-error", id: "stroke_onset-error", "aria-live": "polite" })));
  stroke.on.addEventListener("change", () => {
    strokeDetail.hidden = !stroke.on.checked;
    if (stroke.on.checked) {
      c.urgency.value = "emergency";
      if (!["CT", "MR"].includes(c.modality.value)) c.modality.value = "CT";
      if (!c.body_part.value) c.body_part.value = "HEAD";
      if (!stroke.onset.value) {
        const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
        stroke.onset.value = now.toISOString().slice(0, 16);
      }
    }
  });
  const summary = h("div", { class: "form-summary", id: "form-summary", role: "alert", tabindex: "-1" });
  const search = h("input", { id: "patient-search", type: "search", maxlength: 100, autocomplete: "off",
    "aria-describedby": "patient-search-hint", "aria-controls": "patient-results" });
  const results = h("ul", { id: "patient-results", class: "patient-results", "aria-live": "polite" });
  const linked = h("p", { id: "identity-linked", class: "identity-linked", hidden: true });
  const drafts = h("div", { id: "order-drafts", class: "order-drafts" });
  const traits = ["patient_id", "patient_name", "birth_date", "sex"];

  function link(p) {
    identityId = p.id;
    c.patient_id.value = p.ipp;
    c.patient_name.value = `${p.birth_name} ${p.first_names}`;
    c.birth_date.value = p.birth_date;
    c.sex.value = p.sex;
    for (const name of traits) c[name].disabled = true;
    clear(linked, h("strong", {}, `${t("form.identity_linked")} : `), identityLine(p), " ",
      h("button", { type: "button", class: "btn btn-ghost", id: "identity-clear", onclick: unlink }, t("form.identity_clear")));
    linked.hidden = false;
    clear(results);
  }

  function unlink() {
    identityId = null;
    draftId = null;
    for (const name of traits) { c[name].disabled = false; c[name].value = ""; }
    linked.hidden = true;
    c.patient_id.focus();
  }

  const find = debounce(async () => {
    const q = search.value.trim();
    if (q.length < 2) { clear(results); return; }
    try {
      const { patients } = await api.patients(q);
      clear(results, ...(patients.length
        ? patients.map((p) => h("li", {}, h("button", { type: "button", class: "btn btn-ghost patient-pick", onclick: () => link(p) }, identityLine(p))))
        : [h("li", { class: "muted" }, t("form.search_none"))]));
    } catch (err) {
      clear(results, h("li", { class: "muted" }, err.message));
    }
  }, 250);
  search.addEventListener("input", find);

  function useDraft(d) {
    draftId = d.id;
    link(d.patient);
    if (d.modality) c.modality.value = d.modality;
    if (d.body_part) {
      if (![...c.body_part.options].some((o) => o.value === d.body_part)) c.body_part.append(h("option", { value: d.body_part }, d.body_part));
      c.body_part.value = d.body_part;
    }
    if (d.urgency) c.urgency.value = d.urgency;
    c.clinical_question.value = d.clinical_question || "";
    c.contraindications.value = d.contraindications || "";
    c.consent.checked = Boolean(d.consent);
    (d.clinical_question ? c.consent : c.clinical_question).focus();
  }

  api.drafts().then(({ drafts: list }) => {
    if (!list.length) return;
    clear(drafts, h("h2", {}, t("form.drafts")), h("ul", {}, list.map((d) => h("li", { class: "order-draft" },
      `${identityLine(d.patient)} — ${d.placer_order_number} ${d.modality || ""} ${d.body_part || ""} (${t("form.draft_missing", { fields: d.missing.join(", ") })}) `,
      h("button", { type: "button", class: "btn btn-primary draft-use", onclick: () => useDraft(d) }, t("form.draft_use"))))));
  }).catch(() => {});
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: "request-submit" }, t("form.submit"));
  const consentField = h("div", { class: "field field-check", dataset: { field: "consent" } },
    c.consent, h("label", { for: "consent" }, t("form.consent"), h("span", { class: "req", "aria-hidden": "true" }, " *")),
    h("p", { class: "field-error", id: "consent-error", "aria-live": "polite" }));
  c.consent.id = "consent";
  c.consent.setAttribute("aria-describedby", "consent-error");
  const form = h("form", { class: "card request-form", id: "request-form", novalidate: true, "aria-labelledby": "rf-title" },
    h("h1", { id: "rf-title" }, t("form.title")),
    h("p", { class: "muted" }, t("form.required_note")),
    summary,
    drafts,
    h("fieldset", {}, h("legend", {}, t("form.patient")),
      h("div", { class: "field" },
        h("label", { for: "patient-search" }, t("form.search")),
        h("p", { class: "hint", id: "patient-search-hint" }, t("form.search_hint")),
        search, results),
      linked,
      h("div", { class: "grid-2" },
        field("patient_id", t("form.patient_id"), c.patient_id, t("form.patient_id_hint")),
        field("patient_name", t("form.patient_name"), c.patient_name, t("form.patient_name_hint")),
        field("birth_date", t("form.birth_date"), c.birth_date),
        field("sex", t("form.sex"), c.sex))),
    h("fieldset", { class: "stroke-fieldset" }, h("legend", {}, t("stroke.title")),
      h("div", { class: "field field-check" }, stroke.on, h("label", { for: "stroke-alert" }, t("stroke.raise"))),
      strokeDetail),
    h("fieldset", {}, h("legend", {}, t("form.exam")),
      h("div", { class: "grid-3" },
        field("modality", t("form.modality"), c.modality),
        field("body_part", t("form.body_part"), c.body_part),
        field("urgency", t("form.urgency"), c.urgency)),
      field("clinical_question", t("form.clinical_question"), c.clinical_question, t("form.clinical_question_hint")),
      field("contraindications", t("form.contraindications"), c.contraindications, t("form.contraindications_hint"))),
    consentField,
    h("div", { class: "form-actions" },
      h("a", { href: "#/worklist", class: "btn btn-ghost" }, t("form.cancel")), submit));

  function setError(name, message) {
    const wrap = form.querySelector(`[data-field="${name}"]`);
    if (!wrap) return;
    wrap.classList.toggle("invalid", Boolean(message));
    wrap.querySelector(".field-error").textContent = message || "";
    const control = c[name];
    if (control) control.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function validate() {
    const errors = {};
    for (const [name, control] of Object.entries(c)) {
      if (name === "consent") continue;
      if (control.required && !control.value.trim()) errors[name] = t("form.err.required");
    }
    if (c.birth_date.value && c.birth_date.value > new Date().toISOString().slice(0, 10)) {
      errors.birth_date = t("form.err.future");
    }
    if (!c.consent.checked) errors.consent = t("form.err.consent");
    const onset = stroke.onset.value ? new Date(stroke.onset.value) : null;
    if (stroke.on.checked && (!onset || Number.isNaN(onset.getTime()))) errors.stroke_onset = t("form.err.required");
    else if (stroke.on.checked && onset > new Date(Date.now() + 60000)) errors.stroke_onset = t("form.err.future");
    for (const name of [...Object.keys(c), "stroke_onset"]) setError(name, errors[name]);
    return errors;
  }

  function showSummary(errors) {
    const names = Object.keys(errors);
    summary.replaceChildren();
    if (!names.length) return;
    summary.append(h("p", {}, t("form.err.summary", { n: names.length })),
      h("ul", {}, names.map((n) => h("li", {}, h("a", { href: `#${n}`, onclick: (ev) => { ev.preventDefault(); (c[n] || stroke.onset).focus(); } },
        `${form.querySelector(`label[for="${n}"]`).firstChild.textContent} — ${errors[n]}`)))));
    summary.focus();
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const errors = validate();
    showSummary(errors);
    if (Object.keys(errors).length) return;
    const body = {
      patient: { id: c.patient_id.value.trim(), name: dicomName(c.patient_name.value),
        birth_date: c.birth_date.value, sex: c.sex.value },
      modality: c.modality.value,
      body_part: c.body_part.value,
      clinical_question: c.clinical_question.value.trim(),
      urgency: c.urgency.value,
      consent: true,
    };
    if (c.contraindications.value.trim()) body.contraindications = c.contraindications.value.trim();
    if (identityId !== null) body.patient.identity_id = identityId;
    if (stroke.on.checked) {
      body.stroke = { onset_at: new Date(stroke.onset.value).toISOString(), onset_kind: stroke.kind.value };
    }
    submit.disabled = true;
    try {
      const exam = draftId ? await api.completeDraft(draftId, body) : await api.createExam(body);
      toast(t("form.created", { acc: exam.accession_number }), "ok");
      app.navigate(`#/exam/${encodeURIComponent(exam.id)}`);
    } catch (err) {
      const serverErrors = {};
      for (const f of err.fields || []) {
        const name = String(f.field || "").replace(/^patient\.(id|name)$/, "patient_$1").replace(/^patient\./, "")
          .replace(/^stroke(\..*)?$/, "stroke_onset");
        serverErrors[c[name] || name === "stroke_onset" ? name : "clinical_question"] = f.message;
      }
      if (!Object.keys(serverErrors).length) serverErrors.clinical_question = err.message;
      for (const [n, m] of Object.entries(serverErrors)) setError(n, m);
      showSummary(serverErrors);
    } finally {
      submit.disabled = false;
    }
  });
  for (const control of Object.values(c)) {
    control.addEventListener("change", () => {
      if (control.closest(".invalid")) validate();
    });
  }
  main.append(h("section", { class: "view" }, form));
  c.patient_id.focus();
  return () => {};
}
