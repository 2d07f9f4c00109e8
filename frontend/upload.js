// Upload of DICOM files or a whole folder from the browser with STOW-RS
// (PS3.18 10.5: POST multipart/related; type="application/dicom"), in batches so the
// progress bar moves and one huge request never has to be retried whole.
import { h } from "./dom.js";
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

const seqLength = (data, tag) => data?.[tag]?.Value?.length || 0;

export class UploadZone {
  constructor(room) {
    this.room = room;
    this.files = h("input", { type: "file", id: "upload-files", multiple: true, accept: ".dcm,application/dicom,*/*", class: "sr-only" });
    this.folder = h("input", { type: "file", id: "upload-folder", multiple: true, webkitdirectory: true, class: "sr-only" });
    this.progress = h("progress", { id: "upload-progress", max: "100", value: "0", "aria-label": t("upload.progress"), hidden: true });
    this.status = h("p", { class: "small", id: "upload-status", role: "status", "aria-live": "polite" });
    this.el = h("div", { class: "upload", id: "upload-zone" },
      h("div", { class: "upload-buttons" },
        h("label", { for: "upload-files", class: "btn", tabindex: "0" }, t("upload.files")), this.files,
        h("label", { for: "upload-folder", class: "btn", tabindex: "0" }, t("upload.folder")), this.folder,
        h("span", { class: "muted small" }, t("upload.drop"))),
      this.progress, this.status);
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
    try {
      const files = [];
      for (const f of all) if (await isDicom(f)) files.push(f);
      const skipped = all.length - files.length;
      if (!files.length) {
        this.status.textContent = t("upload.none_dicom");
        return;
      }
      const total = files.reduce((s, f) => s + f.size, 0);
      let done = 0;
      let stored = 0;
      let failed = 0;
      this.progress.hidden = false;
      this.progress.value = 0;
      for (const batch of batches(files)) {
        const boundary = `ti-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
        const bytes = batch.reduce((s, f) => s + f.size, 0);
        this.status.textContent = t("upload.sending", { done: stored + failed, n: files.length });
        const res = await post("/dicomweb/studies", multipart(batch, boundary), boundary, (loaded) => {
          this.progress.value = Math.min(100, ((done + Math.min(loaded, bytes)) / total) * 100);
        });
        done += bytes;
        this.progress.value = (done / total) * 100;
        const ok = seqLength(res.data, "00081199");
        const bad = seqLength(res.data, "00081198");
        if (res.status >= 400 && !ok && !bad) failed += batch.length;
        else {
          stored += ok;
          failed += bad;
        }
      }
      this.status.textContent = t("upload.done", { stored, failed, skipped });
      this.status.className = `small ${failed ? "warn-line" : "ok-line"}`;
    } catch {
      this.status.textContent = t("upload.failed");
      this.status.className = "small warn-line";
    } finally {
      this.busy = false;
      this.el.classList.remove("busy");
    }
  }
}
