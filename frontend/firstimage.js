// The first image before the viewer's library (docs/frontend.md "The first image before
// the viewer"). A page opened on a room asks the server which slice its viewer shows
// first (GET /api/exams/{id}/first-image), then that slice rendered by our own archive
// (WADO-RS frames/1/rendered, PNG: full size, grayscale, the file's window) and its
// metadata, all before the app's modules have loaded. The viewer shows it where
// Cornerstone3D will draw, and the 4.3 MB library is evaluated only once it is on
// screen (or known not to come): its evaluation holds the main thread for ~0.6 s.
// Kept free of the app's other modules: preload.js imports it first thing.

const BUNDLE = "/vendor/cornerstone/cornerstone.js";
// The longest the library waits for the first image (a slow server, a room whose
// viewer does not open): then it is evaluated anyway.
const GATE_MS = 2000;
const REUSE_MS = 5000;

/** A Performance API mark, once per page (bench/viewer.py reads where the first image's time goes). */
export function mark(name) {
  if (!performance.getEntriesByName(name, "mark").length) performance.mark(name);
}

let asked = null; // {examId, promise}
let libraryAsked = false;
let gate = Promise.resolve();
let openGate = () => {};

/**
 * Ask for the first image of an exam's room, once per exam: resolves to
 * `{info, ds, url, width, height}` (url: an object URL of the decoded PNG), or to
 * `{error}`: "none" (no image yet), "failed" (the archive could not render it).
 */
export function askFirstImage(examId) {
  // The page's own ask (preload.js) is taken by the room it opens; a room opened again
  // later asks again (a slice may have come before the first one meanwhile).
  if (asked?.examId === examId && performance.now() - asked.at < REUSE_MS) return asked.promise;
  asked?.promise.then((found) => found.url && URL.revokeObjectURL(found.url));
  gate = new Promise((resolve) => {
    openGate = resolve;
    setTimeout(resolve, GATE_MS);
  });
  const promise = fetchFirstImage(examId).then((found) => {
    if (found.error) openGate();
    return found;
  });
  asked = { examId, promise, at: performance.now() };
  return promise;
}

async function fetchFirstImage(examId) {
  mark("first-image:ask");
  try {
    const resp = await fetch(`/api/exams/${encodeURIComponent(examId)}/first-image`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!resp.ok) return { error: resp.status === 404 ? "none" : "failed" };
    const info = await resp.json();
    mark("first-image:named");
    // PNG asked by name: an <img>'s own Accept would get a JPEG (lossy) from the archive.
    const [image, meta] = await Promise.all([
      fetch(info.rendered_url, { credentials: "same-origin", headers: { Accept: "image/png" } }),
      fetch(info.metadata_url, { credentials: "same-origin", headers: { Accept: "application/dicom+json" } }),
    ]);
    if (!image.ok || !meta.ok || image.headers.get("content-type") !== "image/png") return { error: "failed", info };
    const ds = (await meta.json())[0];
    const url = URL.createObjectURL(await image.blob());
    const img = new Image();
    img.src = url;
    await img.decode();
    mark("first-image:decoded");
    return { info, ds, url, width: img.naturalWidth, height: img.naturalHeight };
  } catch {
    return { error: "failed" };
  }
}

/** The first image asked for this series, if any (a promise, as askFirstImage). */
export function firstImageOf(series) {
  return asked?.promise.then((found) => (found.info?.series_instance_uid === series ? found : null)) ?? Promise.resolve(null);
}

/** The first image is on screen, or will not be: the library may now be evaluated. */
export function firstImageDone() {
  openGate();
}

/**
 * Resolved once the first image is on screen, or known not to come, or after 2 s: what
 * the library's evaluation waits for, and the room's other panels, its socket and their
 * requests (room.js), all of which would otherwise take the main thread or the server
 * before that image. Already resolved when no first image was asked (the library is
 * loaded in this page).
 */
export function firstImageSettled() {
  return gate;
}

/**
 * Download the library now without evaluating it: a module preload of cornerstone.js
 * and of the hashed bundle it names (named too, so that the 4.3 MB is asked at once
 * rather than left to how the browser treats a preloaded module's imports). The module is parsed and compiled as it arrives; imaging.js's
 * import() then evaluates it. A plain fetch into the HTTP cache instead left the
 * compilation to the import: ~0.2 s later Cornerstone3D, the first image no sooner
 * (docs/benchmarks.md "Viewer").
 */
export function preloadLibrary() {
  if (libraryAsked) return;
  libraryAsked = true;
  const link = (href) => document.head.append(Object.assign(document.createElement("link"), { rel: "modulepreload", href }));
  link(BUNDLE);
  fetch(BUNDLE, { credentials: "same-origin" }).then((r) => r.text()).then((text) => {
    const name = /cornerstone-[A-Z2-7]+\.js/.exec(text)?.[0];
    if (name) link(`/vendor/cornerstone/${name}`);
  }).catch(() => {});
}
