// The image panel: series thumbnails appearing live from `images.received` events,
// the viewer for the selected series, and (for the manipulator) the upload zone.
import { h, clear } from "./dom.js";
import { t, formatDate } from "./i18n.js";
import { api } from "./api.js";
import { Viewer, imageSeries } from "./viewer.js";
import { askFirstImage } from "./firstimage.js";
import { libraryLoaded } from "./imaging.js";
import { UploadZone } from "./upload.js";

/** Why a retrieval failed, in words; the server's own sentence when the code is new. */
function reasonText(p) {
  const key = `priors.reason.${p.reason}`;
  const text = t(key);
  return text === key ? p.message || p.reason : text;
}

/** Where a prior from the hospital's PACS stands, in words (docs/priors.md "States"). */
function priorState(p) {
  const where = `${p.position}/${p.total}`;
  if (p.retrieval === "done") return t("priors.retrieved", { n: p.instances });
  if (p.retrieval === "failed") return `${t("priors.failed", { where })} : ${reasonText(p)}`;
  if (p.retrieval === "retrieving") return t("priors.retrieving", { where });
  return t("priors.pending", { where });
}

export class ImagesPanel {
  constructor(room) {
    this.room = room;
    this.series = new Map(); // series_uid -> latest images.received body
    this.strip = h("ul", { class: "thumbs", id: "thumbs", "aria-label": t("images.series") });
    this.viewer = new Viewer();
    this.upload = null;
    this.uploadSlot = h("div", { class: "upload-slot" });
    this.empty = h("p", { class: "muted empty-images", id: "images-empty" }, t("images.none"));
    // The patient's earlier exams in our archive, each series openable beside the
    // current one (docs/api.md "Priors").
    this.priorList = h("ul", { class: "priors", id: "priors", "aria-label": t("priors.title") });
    this.priors = h("details", { class: "priors-box", id: "priors-box", hidden: true },
      h("summary", {}, t("priors.title")), this.priorList);
    this.el = h("section", { class: "card images-card", id: "images-panel", "aria-labelledby": "images-title" },
      h("h2", { id: "images-title" }, t("images.title")), this.uploadSlot, this.strip, this.empty, this.priors, this.viewer.el);
    this.selected = null;
    this.ohif = null;
  }

  render() {
    const exam = this.room.exam;
    if (!exam) return;
    const canUpload = this.room.me.role === "manipulator" && ["acquiring", "images_complete"].includes(exam.status);
    if (canUpload && !this.upload) {
      this.upload = new UploadZone(this.room);
      this.uploadSlot.append(this.upload.el);
    } else if (!canUpload && this.upload) {
      this.upload.el.remove();
      this.upload = null;
    }
    this.empty.hidden = this.series.size > 0;
    this.viewer.examId = exam.id;
    this.viewer.canSave = this.room.me.role === "radiologist" && exam.assigned_radiologist?.id === this.room.me.id;
    this.viewer.onSaved = () => this.room.report?.loadKeyObjects();
    this.viewer.renderButtons?.();
    // "Open in OHIF" only where an OHIF build is installed beside the app (OHIF_URL).
    if (this.room.me.ohif_url && exam.study_instance_uid && !this.ohif) {
      const href = `${this.room.me.ohif_url}/viewer?StudyInstanceUIDs=${encodeURIComponent(exam.study_instance_uid)}`;
      this.ohif = h("a", { class: "btn btn-small", id: "open-ohif", href, target: "_blank", rel: "noopener" }, t("images.ohif"));
      this.el.querySelector("h2").after(this.ohif);
    }
    if (!this.firstAsked && !libraryLoaded()) {
      this.firstAsked = true;
      this.openFirst(exam.id);
    }
    // The priors' requests once the first image is settled (room.js).
    if (!this.priorsLoaded && this.room.settled && this.room.me.role !== "manipulator") {
      this.priorsLoaded = true;
      this.loadPriors(exam.id);
    }
  }

  /**
   * The series the room opens first, named by the server with its first slice
   * (firstimage.js), opened before the room's events list it: the viewer shows the
   * archive's rendering of that slice at once. The events then find it selected.
   */
  async openFirst(examId) {
    const found = await askFirstImage(examId);
    const s = found.info?.series;
    if (!s?.series_uid || this.selected) return;
    this.series.set(s.series_uid, s);
    this.renderThumb(s.series_uid);
    this.empty.hidden = true;
    this.select(s.series_uid);
  }

  async loadPriors(examId) {
    let listing = {};
    try {
      listing = await api.priors(examId);
    } catch {
      return;
    }
    const priors = listing.priors || [];
    const items = [];
    for (const p of priors) {
      const hospital = p.source === "hospital";
      // A prior from the hospital's PACS has series to open once it is retrieved.
      const ready = !hospital || p.retrieval === "done";
      const series = ready ? await imageSeries(p.study_instance_uid) : [];
      const date = p.requested_at ? formatDate(p.requested_at.slice(0, 10)) : "?";
      const title = hospital
        ? `${date} · ${(p.modalities || []).map((m) => t(`modality.${m}`)).join(", ")} · ${p.description || ""} · ${t("priors.from_hospital")}`
        : `${date} · ${t(`modality.${p.modality}`)} · ${t(`body.${p.body_part}`)} · ${t(`status.${p.status}`)}`;
      const buttons = series.map((s) => {
        const uid = s["0020000E"]?.Value?.[0];
        const desc = s["0008103E"]?.Value?.[0] || "";
        const count = s["00201209"]?.Value?.[0] ?? "";
        const label = `${t("priors.prior")} ${date}`;
        return h("li", {}, h("button", {
          type: "button", class: "btn btn-small prior-open", dataset: { study: p.study_instance_uid, series: uid },
          onclick: () => this.viewer.compare(p.study_instance_uid, uid, label),
        }, `${t("priors.compare")} : ${desc || t("priors.series")} (${t("images.count", { n: count })})`));
      });
      const state = hospital ? h("div", { class: "small prior-state", dataset: { state: p.retrieval } }, priorState(p)) : null;
      const empty = ready ? h("div", { class: "muted small" }, t("priors.no_images")) : null;
      items.push(h("li", { class: `prior${hospital ? " prior-hospital" : ""}`, dataset: { exam: p.id, source: p.source || "archive", study: p.study_instance_uid } },
        h("div", {}, title), state, buttons.length ? h("ul", { class: "prior-series" }, ...buttons) : empty));
    }
    // The hospital's PACS as a whole: looked up, or why it could not be.
    const pacs = listing.pacs;
    if (pacs && pacs.status === "failed") {
      items.push(h("li", { class: "prior-pacs", id: "priors-pacs", title: pacs.message || "", dataset: { state: "failed", reason: pacs.reason || "" } },
        `${t("priors.pacs_failed")} : ${reasonText(pacs)}`));
    }
    clear(this.priorList, ...items);
    this.priors.hidden = items.length === 0;
    if (items.length) this.priors.open = true;
  }

  /** A ``prior.retrieval`` event: the prior's progress at once, its series once retrieved. */
  onPriorEvent(b) {
    if (!this.priorsLoaded) return;
    const li = b.study_instance_uid && this.priorList.querySelector(`li.prior[data-study="${CSS.escape(b.study_instance_uid)}"]`);
    if (li && b.status === "retrieving") {
      const state = li.querySelector(".prior-state");
      if (state) {
        state.dataset.state = b.status;
        state.textContent = priorState({ ...b, retrieval: b.status });
      }
      return;
    }
    this.reloadPriors();
  }

  /** One listing request at a time; events that came meanwhile ask for one more. */
  reloadPriors() {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    this.loadPriors(this.room.exam.id).finally(() => {
      this.reloading = false;
      if (this.reloadAgain) {
        this.reloadAgain = false;
        this.reloadPriors();
      }
    });
  }

  onEvent(e) {
    if (e.kind === "prior.retrieval") {
      this.onPriorEvent(e.body || {});
      return;
    }
    if (e.kind !== "images.received") return;
    const b = e.body || {};
    if (!b.series_uid) return;
    const before = this.series.get(b.series_uid);
    this.series.set(b.series_uid, { ...before, ...b, count: Math.max(b.count || 0, before?.count || 0) });
    this.renderThumb(b.series_uid);
    this.empty.hidden = true;
    if (!this.selected) this.select(b.series_uid);
    else if (this.selected === b.series_uid && this.series.get(b.series_uid).count > (before?.count || 0)) {
      this.viewer.grow(this.series.get(b.series_uid).count);
    }
  }

  renderThumb(uid) {
    const s = this.series.get(uid);
    let li = this.strip.querySelector(`li[data-series="${CSS.escape(uid)}"]`);
    // A series received after the report (images.received with late: true): flagged
    // so nobody takes it for part of what was reported (docs/rooms.md "Late series").
    const late = s.late ? ` — ${t("images.late")}` : "";
    const label = `${s.modality || ""} ${s.series_description || ""} — ${t("images.count", { n: s.count })}${late}`.trim();
    const button = h("button", {
      type: "button", class: "thumb-btn", "aria-pressed": this.selected === uid ? "true" : "false",
      "aria-label": `${t("images.open_series")} ${label}`, onclick: () => this.select(uid),
    },
    s.thumbnail_url ? h("img", { src: s.thumbnail_url, alt: "", class: "thumb-img", loading: "lazy", decoding: "async" }) : h("span", { class: "thumb-img" }),
    h("span", { class: "thumb-count" }, String(s.count)),
    s.late ? h("span", { class: "thumb-late", title: t("images.late") }, t("images.late")) : null);
    if (!li) {
      li = h("li", { class: "thumb new", dataset: { series: uid } });
      if (s.late) li.classList.add("late");
      this.strip.append(li);
      setTimeout(() => li.classList.remove("new"), 1500);
    }
    clear(li, button);
  }

  select(uid) {
    this.selected = uid;
    for (const b of this.strip.querySelectorAll(".thumb-btn")) b.setAttribute("aria-pressed", "false");
    const li = this.strip.querySelector(`li[data-series="${CSS.escape(uid)}"] .thumb-btn`);
    if (li) li.setAttribute("aria-pressed", "true");
    const s = this.series.get(uid);
    const study = s.study_uid || this.room.exam?.study_instance_uid;
    this.viewer.open(study, uid, s.count);
  }

  destroy() {
    this.viewer.destroy();
  }
}
