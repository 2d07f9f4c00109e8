// Peer review (docs/review.md): the reviewer's list with the report read-only and the
// RADPEER scoring form; a radiologist's own monthly figures. Coordinators see every
// review, the unassigned first.
import { api } from "./api.js";
import { h, clear } from "./dom.js";
import { t, errorText } from "./i18n.js";
import { Viewer, imageSeries } from "./viewer.js";

const SCORES = ["1", "2a", "2b", "3a", "3b", "4a", "4b"];

function scoreForm(review, done) {
  const select = h("select", { id: `review-score-${review.id}` },
    ...SCORES.map((s) => h("option", { value: s }, t(`review.score.${s}`))));
  const comment = h("textarea", { id: `review-comment-${review.id}`, rows: 3, maxlength: 4000 });
  const error = h("p", { class: "field-error", role: "alert", id: `review-error-${review.id}` });
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: `review-submit-${review.id}` }, t("review.submit"));
  const form = h("form", { class: "review-form" },
    h("div", { class: "field" }, h("label", { for: select.id }, t("review.score")), select),
    h("div", { class: "field" }, h("label", { for: comment.id }, t("review.comment")), comment),
    error, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (select.value !== "1" && !comment.value.trim()) {
      error.textContent = t("review.comment_required");
      comment.focus();
      return;
    }
    submit.disabled = true;
    try {
      await api.scoreReview(review.id, { score: select.value, comment: comment.value });
      done();
    } catch (err) {
      error.textContent = errorText(err);
      submit.disabled = false;
    }
  });
  return form;
}

/** The exam's image series, each opening the viewer: the reviewer reads the images
 * as the author did (the archive lets a review's reviewer read its study). */
function imagesOf(review, study) {
  const viewer = new Viewer();
  const list = h("ul", { class: "review-series", id: `review-series-${review.id}` });
  imageSeries(study).then((series) => {
    clear(list, series.length ? series.map((s) => {
      const uid = s["0020000E"]?.Value?.[0];
      const count = s["00201209"]?.Value?.[0] ?? 1;
      const label = `${s["0008103E"]?.Value?.[0] || s["00080060"]?.Value?.[0] || ""} (${count})`;
      return h("li", {}, h("button", { type: "button", class: "btn btn-small", onclick: () => viewer.open(study, uid, count) }, label));
    }) : h("li", { class: "muted" }, t("review.no_images")));
  });
  return h("div", { class: "review-images" }, h("h4", {}, t("review.images")), list, viewer.el);
}

async function openReview(review, slot, reload) {
  try {
    const full = await api.review(review.id);
    const r = full.report || {};
    clear(slot,
      h("div", { class: "review-report", id: `review-report-${review.id}` },
        ...["indication", "technique", "findings", "conclusion"].map((f) => r[f]
          ? h("div", { class: "report-section" }, h("h4", {}, t(`report.${f}`)), h("p", { class: "report-text" }, r[f])) : null)),
      full.exam?.study_instance_uid ? imagesOf(review, full.exam.study_instance_uid) : null,
      full.score ? null : scoreForm(review, reload));
  } catch (err) {
    clear(slot, h("p", { class: "field-error" }, errorText(err)));
  }
}

export function reviewPanel(me) {
  const list = h("ul", { class: "review-list", id: "review-list" });
  const month = h("input", { id: "review-month", type: "month", value: new Date().toISOString().slice(0, 7) });
  const figures = h("p", { id: "review-figures", class: "small" });
  async function load() {
    try {
      const { reviews } = await api.reviews();
      clear(list, reviews.length ? reviews.map((rv) => {
        const slot = h("div", { class: "review-slot" });
        const label = rv.score ? `${t("review.scored")} ${rv.score}`
          : rv.reviewer_id === null ? t("review.unassigned") : t("review.to_do");
        const open = h("button", { type: "button", class: "btn", id: `review-open-${rv.id}` }, t("review.open"));
        open.addEventListener("click", () => openReview(rv, slot, load));
        return h("li", { id: `review-${rv.id}`, dataset: { score: rv.score || "" } },
          `${t(`review.reason.${rv.reason}`)} — ${label} `, open, slot);
      }) : h("li", { class: "muted" }, t("review.none")));
    } catch {
      clear(list, h("li", {}, t("worklist.load_failed")));
    }
    if (me.role !== "radiologist") return;
    try {
      const data = await api.reviewFigures(month.value, me.id);
      figures.textContent = `${t("review.my_figures")} : ` + SCORES.map((s) => `${s} ${data.scores[s]}`).join(", ") +
        ` (${data.scores.total})`;
    } catch {
      figures.textContent = "";
    }
  }
  month.addEventListener("change", load);
  load();
  return h("details", { class: "card review-card", id: "review-panel" },
    h("summary", {}, t("review.title")), list,
    me.role === "radiologist" ? h("div", {}, h("label", { for: "review-month" }, t("stroke.stats.month")), " ", month, figures) : null);
}
