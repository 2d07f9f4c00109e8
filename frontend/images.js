// The image panel: series thumbnails appearing live from `images.received` events,
// the viewer for the selected series, and (for the manipulator) the upload zone.
import { h, clear } from "./dom.js";
import { t } from "./i18n.js";
import { Viewer } from "./viewer.js";
import { UploadZone } from "./upload.js";

export class ImagesPanel {
  constructor(room) {
    this.room = room;
    this.series = new Map(); // series_uid -> latest images.received body
    this.strip = h("ul", { class: "thumbs", id: "thumbs", "aria-label": t("images.series") });
    this.viewer = new Viewer();
    this.upload = null;
    this.uploadSlot = h("div", { class: "upload-slot" });
    this.empty = h("p", { class: "muted empty-images", id: "images-empty" }, t("images.none"));
    this.el = h("section", { class: "card images-card", id: "images-panel", "aria-labelledby": "images-title" },
      h("h2", { id: "images-title" }, t("images.title")), this.uploadSlot, this.strip, this.empty, this.viewer.el);
    this.selected = null;
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
  }

  onEvent(e) {
    if (e.kind !== "images.received") return;
    const b = e.body || {};
    if (!b.series_uid) return;
    const before = this.series.get(b.series_uid);
    this.series.set(b.series_uid, { ...before, ...b, count: Math.max(b.count || 0, before?.count || 0) });
    this.renderThumb(b.series_uid);
    this.empty.hidden = true;
    if (!this.selected) this.select(b.series_uid);
    else if (this.selected === b.series_uid) this.viewer.grow(this.series.get(b.series_uid).count);
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
