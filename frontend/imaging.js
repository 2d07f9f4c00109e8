// Cornerstone3D for the viewer (docs/frontend.md "The viewer"): started once, fed by
// our own DICOMweb. A series is read from WADO-RS `metadata`; each instance becomes a
// `wadors:` image id whose pixels come from WADO-RS `frames` (the session cookie goes
// with these same-origin requests), decoded in the browser by the DICOM image loader.
import { dicomJson } from "./api.js";
import { firstImageSettled, mark } from "./firstimage.js";

export { mark };

let ready = null;
let loaded = false;
const OCTET = "application/octet-stream";

/** The vendored modules, started once: `{core, tools, loader}`. */
export function cornerstone() {
  if (!ready) ready = start();
  return ready;
}

/** Start the library ahead of need (a room opening); a failure is the viewer's to show. */
export function preloadViewer() {
  cornerstone().catch(() => {});
}

/**
 * The library is evaluated in this page: a room opened now gets Cornerstone3D's first
 * image about as soon as the archive's (docs/benchmarks.md "Viewer"), so it asks for no
 * archive-rendered image (firstimage.js), whose requests would only compete with it.
 */
export function libraryLoaded() {
  return loaded;
}

async function start() {
  // Not before the first image is on screen (firstimage.js): evaluating the bundle
  // holds the main thread that draws it.
  await firstImageSettled();
  mark("viewer:modules-start");
  const cs = await import("./vendor/cornerstone/cornerstone.js");
  loaded = true;
  mark("viewer:modules-loaded");
  const { core, tools } = cs;
  await core.init();
  cs.dicomImageLoaderModule.init({
    maxWebWorkers: 1,
    decodeConfig: { wasmBasePath: new URL("./vendor/cornerstone/wasm/", import.meta.url).href },
    // One frame asked, one frame answered as a single part in its stored syntax (PS3.18
    // 8.7.3.5.2; our archive names it in the Content-Type's transfer-syntax): the
    // loader then takes the body as the pixels instead of searching a multipart body
    // byte by byte for its boundary, a tenth of the first image's CPU time (the profile
    // of bench/viewer.py --profile).
    beforeSend: () => ({ Accept: `${OCTET}; transfer-syntax=*` }),
  });
  // Above the loader's own providers: a frame fetched early is taken from here.
  core.metaData.addProvider(earlyFrameProvider, 10_000);
  // Decoded and in the cache (before its first draw): splits the first image's time.
  core.eventTarget.addEventListener(core.Enums.Events.IMAGE_LOADED, () => mark("viewer:first-image-loaded"), { once: true });
  tools.init();
  for (const tool of TOOL_CLASSES(tools, core)) tools.addTool(tool);
  mark("viewer:ready");
  return { core, tools, loader: cs.dicomImageLoaderModule };
}

export const TOOL_CLASSES = (tools, core) => [
  tools.WindowLevelTool, tools.PanTool, tools.ZoomTool, tools.StackScrollTool,
  stackProbe(tools, core), tools.LengthTool, tools.AngleTool, tools.EllipticalROITool,
];

/**
 * The density probe. In the pinned release the stack probe reads its pixel through
 * the displayed image's own voxel manager with the slice's index in the stack as the
 * third coordinate, which finds nothing beyond the first slice; when that happens the
 * value is read at (i, j) of that image itself (its pixels are already rescaled to HU
 * by the loader, PS3.3 C.11.1.1.2). Same tool name, so annotations stay "Probe".
 */
function stackProbe(tools, core) {
  return class StackProbeTool extends tools.ProbeTool {
    _calculateCachedStats(annotation, ...rest) {
      const result = super._calculateCachedStats(annotation, ...rest);
      for (const [target, stats] of Object.entries(annotation.data.cachedStats || {})) {
        if (stats.value !== undefined || !stats.index || !target.startsWith("imageId:")) continue;
        const image = core.cache.getImage(target.slice("imageId:".length));
        const value = image?.voxelManager?.getAtIJK(stats.index[0], stats.index[1], 0);
        if (value !== undefined) stats.value = value;
      }
      return result;
    }
  };
}

const v = (ds, tag, i = 0) => ds?.[tag]?.Value?.[i];
const vs = (ds, tag) => ds?.[tag]?.Value || [];
const personName = (ds, tag) => {
  const p = v(ds, tag);
  return (typeof p === "object" ? p?.Alphabetic : p) || "";
};

/**
 * A series read from WADO-RS metadata: image ids in spatial order (along the normal of
 * ImageOrientationPatient, PS3.3 C.7.6.2.1.1; instance number when there is no geometry),
 * and what the banner shows. The metadata request and the library's start-up overlap;
 * with `firstFrame`, the first slice's frame is asked as soon as the metadata says which
 * slice is first, while the library may still be evaluated (`earlyFrame`), not after the
 * viewport has been built.
 */
export async function loadSeries(study, series, { firstFrame = false } = {}) {
  const base = `${location.origin}/dicomweb/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
  mark("viewer:metadata-start");
  // The room's first series: asked now, read once the first image is on screen (its JSON,
  // 300 instances, and their sorting took the main thread before that image's frame).
  const meta = await dicomJson(`${base}/metadata`, { parseAfter: firstFrame ? firstImageSettled() : null });
  mark("viewer:metadata-end");
  if (!meta || !meta.length) return null;
  const data = seriesFromMetadata(base, study, series, meta);
  if (firstFrame && data.imageIds.length) earlyFrame(data.imageIds[0]);
  const { loader } = await cornerstone();
  for (const [id, ds] of data.metadata) loader.wadors.metaDataManager.add(id, ds);
  delete data.metadata;
  return data;
}

/** The series' image ids in spatial order and its banner, from its WADO-RS metadata (no library needed). */
export function seriesFromMetadata(base, study, series, meta) {
  const iop = vs(meta[0], "00200037").map(Number);
  const normal = iop.length === 6 ? cross(iop.slice(0, 3), iop.slice(3, 6)) : null;
  const items = meta.map((ds) => {
    const ipp = vs(ds, "00200032").map(Number);
    return {
      ds,
      sop: v(ds, "00080018"),
      number: Number(v(ds, "00200013") ?? 0),
      position: normal && ipp.length === 3 ? dot(ipp, normal) : null,
      frames: Number(v(ds, "00280008") ?? 1) || 1,
    };
  }).filter((x) => x.sop);
  const spatial = items.every((x) => x.position !== null);
  items.sort((a, b) => (spatial ? a.position - b.position : 0) || a.number - b.number);
  // The banner and the window of the first slice shown (the one the archive renders first).
  const first = items[0]?.ds;
  const imageIds = [];
  const positions = [];
  const metadata = [];
  for (const item of items) {
    for (let f = 1; f <= item.frames; f += 1) {
      const id = `wadors:${base}/instances/${encodeURIComponent(item.sop)}/frames/${f}`;
      metadata.push([id, item.ds]);
      imageIds.push(id);
      positions.push(item.position);
    }
  }
  const wc = Number(v(first, "00281050"));
  const ww = Number(v(first, "00281051"));
  return {
    study,
    series,
    imageIds,
    positions,
    metadata,
    spatial,
    modality: v(first, "00080060") || "",
    thickness: Number(v(first, "00180050")) || null,
    window: Number.isFinite(wc) && Number.isFinite(ww) && ww > 0 ? [wc, ww] : null,
    // Reformats need a stack of parallel slices of one geometry.
    volumeReady: spatial && items.length >= 3 && items.every((x) => x.frames === 1),
    banner: {
      patient: personName(first, "00100010").replaceAll("^", " ").trim(),
      patientId: v(first, "00100020") || "",
      birth: v(first, "00100030") || "",
      sex: v(first, "00100040") || "",
      studyDate: v(first, "00080020") || "",
      studyDescription: v(first, "00081030") || "",
      seriesDescription: v(first, "0008103E") || "",
      seriesNumber: v(first, "00200011") ?? "",
      modality: v(first, "00080060") || "",
    },
  };
}

// Frames fetched before the library could ask for them: image id -> the promise of
// {pixelData, transferSyntaxUid}, or null when the answer was not one single part.
const early = new Map();

/**
 * Fetch a frame now, in its stored syntax as one part (PS3.18 8.7.3.5.2), so that its
 * bytes are here when the viewport asks for them: the loader first asks the metadata
 * for a frame's "compressedFrameData" (the provider below) before going to the network.
 */
export function earlyFrame(imageId) {
  if (early.has(imageId)) return;
  mark("viewer:early-frame-start");
  const url = imageId.slice("wadors:".length);
  early.set(imageId, fetch(url, { credentials: "same-origin", headers: { Accept: `${OCTET}; transfer-syntax=*` } })
    .then(async (resp) => {
      const syntax = /transfer-syntax=([0-9.]+)/.exec(resp.headers.get("content-type") || "")?.[1];
      if (!resp.ok || !syntax || !(resp.headers.get("content-type") || "").startsWith(OCTET)) return null;
      const pixelData = new Uint8Array(await resp.arrayBuffer());
      mark("viewer:early-frame-end");
      return { pixelData, transferSyntaxUid: syntax };
    })
    .catch(() => null)
    .then((frame) => {
      if (frame) early.set(imageId, frame);
      else early.delete(imageId);
      return frame;
    }));
}

/** The frames fetched early, handed to the loader once each (then the cache has the image). */
function earlyFrameProvider(type, imageId) {
  if (type !== "compressedFrameData") return undefined;
  const frame = early.get(imageId);
  if (!frame || frame instanceof Promise) return undefined;
  early.delete(imageId);
  mark("viewer:early-frame-taken");
  return frame;
}

/** Wait for a frame asked early (so that the viewport takes it rather than asking again). */
export async function earlyFrameReady(imageId) {
  await early.get(imageId);
}

export function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export function dot(a, b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

/**
 * The orientation letters of a direction in the patient coordinate system (LPS, PS3.3
 * C.7.6.2.1.1): +x left, +y posterior, +z head. Up to three letters, the largest
 * component first, components under 0.25 left out (as for an oblique plane).
 */
export function orientationLetters(d, names) {
  const parts = [
    [Math.abs(d[0]), d[0] > 0 ? names.L : names.R],
    [Math.abs(d[1]), d[1] > 0 ? names.P : names.A],
    [Math.abs(d[2]), d[2] > 0 ? names.S : names.I],
  ].filter(([m]) => m > 0.25);
  parts.sort((a, b) => b[0] - a[0]);
  return parts.map(([, l]) => l).join("");
}
