// Loading the slices of one series through DICOMweb (PS3.18): the series metadata
// for pixel attributes and order, then each slice's pixels from WADO-RS `/frames/1`
// (native, windowed in the browser so window/level drags are instant), falling back
// to `/rendered` (server-side windowing) for compressed or colour images.
import { dicomJson } from "./api.js";

const v = (ds, tag, i = 0) => ds?.[tag]?.Value?.[i];

export class SeriesSource {
  constructor(study, series) {
    this.base = `/dicomweb/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
    this.instances = []; // [{sop, rows, cols, bits, signed, slope, intercept, invert, rgb, window}]
    this.cache = new Map(); // sop -> promise of a slice
  }

  /** (Re)read the series' instance list; returns the count. */
  async list() {
    let meta = null;
    try {
      meta = await dicomJson(`${this.base}/metadata`);
    } catch {
      meta = null;
    }
    if (!meta || !meta.length) {
      meta = await dicomJson(`${this.base}/instances?includefield=00200013`);
    }
    const items = meta.map((ds) => {
      const wc = Number(v(ds, "00281050"));
      const ww = Number(v(ds, "00281051"));
      return {
        sop: v(ds, "00080018"),
        number: Number(v(ds, "00200013") ?? 0),
        z: Number(v(ds, "00200032", 2) ?? 0),
        rows: Number(v(ds, "00280010") ?? 0),
        cols: Number(v(ds, "00280011") ?? 0),
        bits: Number(v(ds, "00280100") ?? 16),
        signed: Number(v(ds, "00280103") ?? 0) === 1,
        slope: Number(v(ds, "00281053") ?? 1),
        intercept: Number(v(ds, "00281052") ?? 0),
        invert: v(ds, "00280004") === "MONOCHROME1",
        rgb: Number(v(ds, "00280002") ?? 1) !== 1,
        window: Number.isFinite(wc) && Number.isFinite(ww) && ww > 0 ? [wc, ww] : null,
      };
    }).filter((x) => x.sop);
    items.sort((a, b) => a.number - b.number || a.z - b.z);
    this.instances = items;
    return items.length;
  }

  /** A slice: {kind: "raw", width, height, pixels, slope, intercept, invert} or {kind: "bitmap", bitmap, window}. */
  slice(index, window) {
    const inst = this.instances[index];
    if (!inst) return Promise.reject(new Error("no such slice"));
    const cached = this.cache.get(inst.sop);
    if (cached) return cached;
    const p = this.loadRaw(inst).catch(() => this.loadRendered(inst, window));
    this.cache.set(inst.sop, p);
    p.catch(() => this.cache.delete(inst.sop));
    return p;
  }

  async loadRaw(inst) {
    if (inst.rgb || !inst.rows || !inst.cols || ![8, 16].includes(inst.bits)) throw new Error("not raw-able");
    const resp = await fetch(`${this.base}/instances/${encodeURIComponent(inst.sop)}/frames/1`, {
      credentials: "same-origin",
      headers: { Accept: "application/octet-stream" },
    });
    if (!resp.ok) throw new Error(`frames ${resp.status}`);
    const type = resp.headers.get("content-type") || "";
    if (!type.startsWith("application/octet-stream")) throw new Error("not a single raw frame");
    const buf = await resp.arrayBuffer();
    const n = inst.rows * inst.cols;
    if (buf.byteLength < (n * inst.bits) / 8) throw new Error("short frame");
    let pixels;
    if (inst.bits === 8) pixels = new Uint8Array(buf, 0, n);
    else pixels = inst.signed ? new Int16Array(buf.slice(0, n * 2)) : new Uint16Array(buf.slice(0, n * 2));
    return { kind: "raw", width: inst.cols, height: inst.rows, pixels, slope: inst.slope, intercept: inst.intercept, invert: inst.invert };
  }

  async loadRendered(inst, window) {
    const q = window ? `?window=${window[0]},${window[1]},linear` : "";
    const resp = await fetch(`${this.base}/instances/${encodeURIComponent(inst.sop)}/rendered${q}`, {
      credentials: "same-origin",
      headers: { Accept: "image/png, image/jpeg;q=0.9, */*;q=0.1" },
    });
    if (!resp.ok) throw new Error(`rendered ${resp.status}`);
    const bitmap = await createImageBitmap(await resp.blob());
    return { kind: "bitmap", bitmap, window, width: bitmap.width, height: bitmap.height };
  }

  /** Re-render a bitmap slice for a new window (server-side windowing). */
  rerender(index, window) {
    const inst = this.instances[index];
    const p = this.loadRendered(inst, window);
    this.cache.set(inst.sop, p);
    return p;
  }

  /** Warm the cache around `index`, a few at a time, so scrolling does not wait. */
  async prefetch(index, window, radius = 40) {
    const order = [];
    for (let d = 1; d <= radius; d += 1) order.push(index + d, index - d);
    const todo = order.filter((i) => i >= 0 && i < this.instances.length && !this.cache.has(this.instances[i].sop));
    const workers = Array.from({ length: 4 }, async () => {
      while (todo.length) {
        const i = todo.shift();
        await this.slice(i, window).catch(() => null);
      }
    });
    await Promise.all(workers);
  }
}

/** Window a raw slice into RGBA pixels (DICOM PS3.3 C.11.2.1.2 linear VOI LUT). */
export function windowInto(slice, window, imageData) {
  const { pixels, slope, intercept, invert } = slice;
  const [c, w] = window;
  const lo = c - 0.5 - (w - 1) / 2;
  const scale = 255 / Math.max(w - 1, 1);
  const out = imageData.data;
  for (let i = 0, j = 0; i < pixels.length; i += 1, j += 4) {
    const hu = pixels[i] * slope + intercept;
    let g = (hu - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    if (invert) g = 255 - g;
    out[j] = out[j + 1] = out[j + 2] = g;
    out[j + 3] = 255;
  }
}
