// Upload of DICOM files or a whole folder from the browser with STOW-RS
// (PS3.18 10.5: POST multipart/related; type="application/dicom"), in batches so the
// progress bar moves and one huge request never has to be retried whole. The upload
// is bound to the room's exam (POST /studies/{its StudyInstanceUID}): what does not
// belong to it is kept aside for a person to decide, never filed elsewhere. Each
// file is told what became of it, from the private outcome block of each response
// item (docs/dicomweb.md "Store response").
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";

const BATCH_BYTES = 16 * 1024 * 1024;
const BATCH_FILES = 50;

async function isDicom(file) {
  if (file.name.toUpperCase() === "DICOMDIR") return false;
  if (file.size < 132) return false;
  const head = new Uint8Array(await file.slice(128, 132).arrayBuffer());
  return String.fromCharCode(...head) === "DICM";
}

function batches(files) {
  const out = [];
  let cur = [];
  let size = 0;
  for (const f of files) {
    if (cur.length && (size + f.size > BATCH_BYTES || cur.length >= BATCH_FILES)) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(f);
    size += f.size;
  }
  if (cur.length) out.push(cur);
  return out;
}

function multipart(files, boundary) {
  const parts = [];
  for (const f of files) {
    parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, f, "\r\n");
  }
  parts.push(`--${boundary}--\r\n`);
  return new Blob(parts);
}

function post(url, body, boundary, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader("Accept", "application/dicom+json");
    xhr.upload.onprogress = (ev) => ev.lengthComputable && onProgress(ev.loaded);
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText || "null");
      } catch {
        data = null;
      }
      resolve({ status: xhr.status, data });
    };
    xhr.onerror = () => reject(new Error("network"));
    xhr.send(body);
  });
}

const first = (item, tag) => item?.[tag]?.Value?.[0];

/** Per part of a STOW response (1-based): { outcome: FILED|ASIDE|REFUSED, reason, message }. */
export function outcomesByPart(data) {
  const out = new Map();
  const items = [...(data?.["00081199"]?.Value || []), ...(data?.["00081198"]?.Value || [])];
  for (const item of items) {
    const part = first(item, "00771005");
    if (!part) continue;
    const refused = "00081197" in item;
    out.set(part, {
      outcome: first(item, "00771001") || (refused ? "REFUSED" : "FILED"),
      reason: first(item, "00771002") || "",
      message: first(item, "00771003") || "",
    });
  }
  return out;
}

function describe(result) {
  if (result.outcome === "FILED") return t("upload.filed");
  const key = result.outcome === "ASIDE" ? `reconciliation.reason.${result.reason}` : "";
  const why = key && t(key) !== key ? t(key) : result.message.replace(/^(kept aside|refused): /, "");
  return t(result.outcome === "ASIDE" ? "upload.kept_aside" : "upload.refused", { why });
}

export class UploadZone {
  constructor(room) {
    this.room = room;
    this.files = h("input", { type: "file", id: "upload-files", multiple: true, accept: ".dcm,application/dicom,*/*", class: "sr-only" });
    this.folder = h("input", { type: "file", id: "upload-folder", multiple: true, webkitdirectory: true, class: "sr-only" });
    this.progress = h("progress", { id: "upload-progress", max: "100", value: "0", "aria-label": t("upload.progress"), hidden: true });
    this.status = h("p", { class: "small", id: "upload-status", role: "status", "aria-live": "polite" });
    this.lines = h("ul", { class: "upload-lines small", id: "upload-lines" });
    this.details = h("details", { class: "upload-details", hidden: true },
      h("summary", {}, t("upload.per_file")), this.lines);
    this.el = h("div", { class: "upload", id: "upload-zone" },
      h("div", { class: "upload-buttons" },
        h("label", { for: "upload-files", class: "btn", tabindex: "0" }, t("upload.files")), this.files,
        h("label", { for: "upload-folder", class: "btn", tabindex: "0" }, t("upload.folder")), this.folder,
        h("span", { class: "muted small" }, t("upload.drop"))),
      this.progress, this.status, this.details);
    for (const input of [this.files, this.folder]) {
      input.addEventListener("change", () => this.upload([...input.files]).finally(() => { input.value = ""; }));
    }
    for (const label of this.el.querySelectorAll("label.btn")) {
      label.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          label.control.click();
        }
      });
    }
    this.el.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      this.el.classList.add("dragging");
    });
    this.el.addEventListener("dragleave", () => this.el.classList.remove("dragging"));
    this.el.addEventListener("drop", (ev) => {
      ev.preventDefault();
      this.el.classList.remove("dragging");
      this.upload([...(ev.dataTransfer?.files || [])]);
    });
  }

  async upload(all) {
    if (!all.length || this.busy) return;
    this.busy = true;
    this.el.classList.add("busy");
    this.details.hidden = true;
    clear(this.lines);
    try {
      const files = [];
      for (const f of all) if (await isDicom(f)) files.push(f);
      const skipped = all.length - files.length;
      if (!files.length) {
        this.status.textContent = t("upload.none_dicom");
        return;
      }
      const total = files.reduce((s, f) => s + f.size, 0);
      const study = this.room.exam?.study_instance_uid;
      const url = study ? `/dicomweb/studies/${encodeURIComponent(study)}` : "/dicomweb/studies";
      let done = 0;
      const counts = { FILED: 0, ASIDE: 0, REFUSED: 0 };
      this.progress.hidden = false;
      this.progress.value = 0;
      for (const batch of batches(files)) {
        const boundary = `ti-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
        const bytes = batch.reduce((s, f) => s + f.size, 0);
        this.status.textContent = t("upload.sending", { done: counts.FILED + counts.ASIDE + counts.REFUSED, n: files.length });
        const res = await post(url, multipart(batch, boundary), boundary, (loaded) => {
          this.progress.value = Math.min(100, ((done + Math.min(loaded, bytes)) / total) * 100);
        });
        done += bytes;
        this.progress.value = (done / total) * 100;
        const byPart = outcomesByPart(res.data);
        batch.forEach((file, i) => {
          const result = byPart.get(i + 1) || {
            outcome: "REFUSED", reason: "", message: (res.data?.error?.message) || `HTTP ${res.status}`,
          };
          counts[result.outcome] = (counts[result.outcome] || 0) + 1;
          this.lines.append(h("li", { class: `upload-${result.outcome.toLowerCase()}` },
            h("span", { class: "upload-file" }, file.webkitRelativePath || file.name), " — ", describe(result)));
        });
      }
      this.status.textContent = t("upload.done", {
        stored: counts.FILED, aside: counts.ASIDE, failed: counts.REFUSED, skipped,
      });
      this.status.className = `small ${counts.ASIDE || counts.REFUSED ? "warn-line" : "ok-line"}`;
      this.details.hidden = false;
      this.details.open = Boolean(counts.ASIDE || counts.REFUSED);
    } catch {
      this.status.textContent = t("upload.failed");
      this.status.className = "small warn-line";
    } finally {
      this.busy = false;
      this.el.classList.remove("busy");
    }
  }
}
