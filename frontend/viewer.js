// The reading viewer on Cornerstone3D (docs/frontend.md "The viewer"): stack viewports
// with banner, orientation markers, slice position and thickness, window/level presets,
// zoom, scroll and cine; HU probe, length, angle and elliptical ROI; MPR (axial,
// coronal, sagittal) with MIP/thick slab for CT volumes; one or two viewports with
// linked scrolling (a second series of the exam, or a prior exam). Keyboard shortcuts
// are read on the whole viewer, so they keep working after a button was clicked.
import { h, clear, debounce } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { cornerstone, earlyFrameReady, libraryLoaded, loadSeries, mark, orientationLetters, seriesFromMetadata } from "./imaging.js";
import { firstImageDone, firstImageOf } from "./firstimage.js";
import { api, dicomJson } from "./api.js";

// Key objects, measurement reports and the report's PDF are in the study, not series to view.
const NOT_IMAGES = ["KO", "SR", "DOC"];

/** The study's image series (QIDO-RS), [] when they cannot be listed. */
export async function imageSeries(study) {
  const found = await dicomJson(`/dicomweb/studies/${encodeURIComponent(study)}/series`).catch(() => null);
  return (found || []).filter((s) => !NOT_IMAGES.includes(s["00080060"]?.Value?.[0]));
}

export const PRESETS = {
  brain: [40, 80],
  stroke: [40, 40],
  lung: [-600, 1500],
  bone: [400, 1800],
  abdomen: [50, 400],
};

const TOOLS = {
  wl: "WindowLevel", pan: "Pan", zoom: "Zoom", probe: "Probe", length: "Length", angle: "Angle", ellipse: "EllipticalROI",
};
const ANNOTATIONS = ["Probe", "Length", "Angle", "EllipticalROI"];
const KEY_TOOLS = { w: "wl", p: "pan", z: "zoom", h: "probe", l: "length", a: "angle", e: "ellipse" };
const SLABS = [0, 5, 10, 20];
let counter = 0;

export class Viewer {
  constructor() {
    counter += 1;
    this.uid = `v${counter}`;
    this.tool = "wl";
    this.mode = "stack"; // stack | mpr
    this.slab = 0;
    this.mip = false;
    this.linked = true;
    this.panes = [];
    this.active = 0;
    this.cine = null;
    this.info = h("div", { class: "viewer-info", id: "viewer-info", "aria-live": "polite" });
    this.slider = h("input", { type: "range", id: "viewer-slice", min: "1", max: "1", value: "1", "aria-label": t("viewer.slice") });
    const button = (label, attrs, onclick) => h("button", { type: "button", class: "btn btn-small", ...attrs, onclick }, label);
    const presets = Object.keys(PRESETS).map((name) => button(t(`viewer.preset.${name}`),
      { class: "btn btn-small preset", dataset: { preset: name }, "aria-pressed": "false" }, () => this.setWindow(PRESETS[name], name)));
    const tools = Object.keys(TOOLS).map((name) => button(t(`viewer.tool.${name}`),
      { class: "btn btn-small tool", dataset: { tool: name }, "aria-pressed": name === this.tool ? "true" : "false" }, () => this.setTool(name)));
    this.modeButtons = [
      button(t("viewer.mode.stack"), { class: "btn btn-small mode", id: "viewer-mode-stack", dataset: { mode: "stack" } }, () => this.setMode("stack")),
      button(t("viewer.mode.mpr"), { class: "btn btn-small mode", id: "viewer-mode-mpr", dataset: { mode: "mpr" } }, () => this.setMode("mpr")),
    ];
    this.slabSelect = h("select", { id: "viewer-slab", "aria-label": t("viewer.slab"), onchange: () => this.setSlab(Number(this.slabSelect.value)) },
      ...SLABS.map((mm) => h("option", { value: String(mm) }, mm ? t("viewer.slab.mm", { mm }) : t("viewer.slab.thin"))));
    this.mipBox = h("input", { type: "checkbox", id: "viewer-mip", onchange: () => this.setMip(this.mipBox.checked) });
    this.linkBox = h("input", { type: "checkbox", id: "viewer-link", checked: true, onchange: () => this.setLinked(this.linkBox.checked) });
    this.cineButton = button(t("viewer.cine"), { id: "viewer-cine", "aria-pressed": "false" }, () => this.toggleCine());
    // Key images and measurements saved into the study as DICOM (KO and SR, built by the server).
    this.keys = new Map(); // imageId -> {sop_instance_uid, frame}
    this.keyButton = button(t("viewer.key"), { id: "viewer-key", "aria-pressed": "false" }, () => this.toggleKey());
    this.saveButton = button(t("viewer.save"), { id: "viewer-save", hidden: true }, () => this.saveKeyObjects());
    this.saveStatus = h("p", { class: "small muted", id: "viewer-save-status", role: "status" });
    this.layoutButtons = [1, 2].map((n) => button(t(`viewer.layout.${n}`), { class: "btn btn-small layout", dataset: { layout: String(n) } }, () => this.setLayout(n)));
    this.toolbar = h("div", { class: "viewer-toolbar", role: "toolbar", "aria-label": t("viewer.tools") },
      h("div", { class: "group" }, ...presets),
      h("div", { class: "group" }, ...tools),
      h("div", { class: "group" }, ...this.modeButtons,
        h("label", { class: "inline small" }, this.mipBox, " ", t("viewer.mip")), this.slabSelect),
      h("div", { class: "group" }, ...this.layoutButtons,
        h("label", { class: "inline small" }, this.linkBox, " ", t("viewer.link")), this.cineButton,
        button(t("viewer.clear"), { id: "viewer-clear" }, () => this.clearMeasurements()),
        this.keyButton, this.saveButton,
        button(t("viewer.reset"), { id: "viewer-reset" }, () => this.reset())));
    this.stage = h("div", { class: "viewer-stage layout-1" });
    this.measures = h("ul", { class: "viewer-measures", id: "viewer-measures", "aria-live": "polite", "aria-label": t("viewer.measures") });
    this.el = h("div", { class: "viewer", id: "viewer", hidden: true, tabindex: "-1" }, this.toolbar, this.stage, this.info,
      h("div", { class: "viewer-slider" }, h("label", { for: "viewer-slice" }, t("viewer.slice")), this.slider),
      this.measures, this.saveStatus, h("p", { class: "muted small viewer-help" }, t("viewer.help")));
    this.el.addEventListener("keydown", (ev) => this.key(ev));
    this.slider.addEventListener("input", () => this.jump(this.active, Number(this.slider.value) - 1));
    this.relist = debounce(() => this.reloadMain(), 600);
    this.remeasure = debounce(() => this.renderMeasures(), 100);
    this.series = [null, null]; // what panes 0 and 1 show in the stack mode
  }

  /** Show a series of the exam in the first viewport. */
  async open(study, series, count) {
    mark("viewer:open");
    this.el.hidden = false;
    this.expected = count;
    this.want = { study, series };
    if (!this.panes.length && !libraryLoaded()) this.showPreview(study, series);
    const [, data] = await Promise.all([this.ensure(), loadSeries(study, series, { firstFrame: true }).catch(() => null)]);
    if (!data || this.want.series !== series) {
      if (!data) {
        this.info.textContent = t("viewer.unavailable");
        this.endPreview();
      }
      return;
    }
    // The first slice's frame, asked while the library started, is taken rather than asked again.
    await earlyFrameReady(data.imageIds[0]);
    this.series[0] = data;
    this.windowSet = false;
    this.mode = "stack";
    await this.build();
    if (data.imageIds.length < (count || 0)) this.relist();
  }

  /** Show another series (a prior, or a second series) beside the first, scrolling linked. */
  async compare(study, series, label) {
    await this.ensure();
    const data = await loadSeries(study, series).catch(() => null);
    if (!data) {
      this.info.textContent = t("viewer.unavailable");
      return;
    }
    data.label = label || "";
    this.series[1] = data;
    this.mode = "stack";
    await this.build();
  }

  grow(count) {
    this.expected = count;
    this.relist();
  }

  async reloadMain() {
    if (!this.want || this.mode !== "stack") return;
    const data = await loadSeries(this.want.study, this.want.series).catch(() => null);
    if (!data || !this.panes[0] || this.want.series !== data.series) return;
    const pane = this.panes[0];
    const index = pane.viewport.getCurrentImageIdIndex();
    this.series[0] = data;
    pane.data = data;
    await pane.viewport.setStack(data.imageIds, Math.min(index, data.imageIds.length - 1));
    this.applyWindow(pane);
    pane.viewport.render();
    if (data.imageIds.length < (this.expected || 0)) this.relist();
  }

  /** Start Cornerstone3D and this viewer's engine and tools once, however many callers wait. */
  ensure() {
    if (!this.started) this.started = this.start();
    return this.started;
  }

  async start() {
    this.cs = await cornerstone();
    const { core, tools } = this.cs;
    this.engine = new core.RenderingEngine(`engine-${this.uid}`);
    this.group = tools.ToolGroupManager.createToolGroup(`tools-${this.uid}`);
    for (const name of Object.values(TOOLS).concat(["StackScroll"])) this.group.addTool(tools[`${name}Tool`].toolName);
    this.bindTools();
    this.resizer = new ResizeObserver(() => this.engine.resize(true, true));
    this.resizer.observe(this.stage);
    this.onAnnotation = () => this.remeasure();
    for (const ev of ["ANNOTATION_COMPLETED", "ANNOTATION_MODIFIED", "ANNOTATION_REMOVED"]) {
      core.eventTarget.addEventListener(tools.Enums.Events[ev], this.onAnnotation);
    }
  }

  bindTools() {
    const { tools } = this.cs;
    const B = tools.Enums.MouseBindings;
    const name = (key) => tools[`${TOOLS[key]}Tool`].toolName;
    for (const key of Object.keys(TOOLS)) this.group.setToolPassive(name(key));
    const extra = { pan: [{ mouseButton: B.Auxiliary }], zoom: [{ mouseButton: B.Secondary }] };
    for (const [key, bindings] of Object.entries(extra)) {
      const all = key === this.tool ? [{ mouseButton: B.Primary }, ...bindings] : bindings;
      this.group.setToolActive(name(key), { bindings: all });
    }
    if (!extra[this.tool]) this.group.setToolActive(name(this.tool), { bindings: [{ mouseButton: B.Primary }] });
    this.group.setToolActive(tools.StackScrollTool.toolName, { bindings: [{ mouseButton: B.Wheel }] });
  }

  /** (Re)create the viewports for the current mode and series. */
  async build() {
    const { core } = this.cs;
    this.stopCine();
    for (const pane of this.panes) {
      this.group.removeViewports(this.engine.id, pane.id);
      this.engine.disableElement(pane.id);
    }
    this.panes = [];
    clear(this.stage);
    const main = this.series[0];
    // The archive's image stays over the viewport until Cornerstone3D has drawn it.
    if (this.preview) this.stage.append(this.preview.el);
    if (!main) return;
    let specs;
    if (this.mode === "mpr") {
      specs = ["axial", "coronal", "sagittal"].map((o) => ({ data: main, orientation: o }));
    } else {
      specs = [{ data: main }];
      if (this.series[1]) specs.push({ data: this.series[1] });
    }
    this.stage.className = `viewer-stage layout-${specs.length}`;
    specs.forEach((spec, i) => this.panes.push(this.makePane(spec, i)));
    const T = core.Enums.ViewportType;
    this.engine.setViewports(this.panes.map((p) => ({
      viewportId: p.id,
      type: p.orientation ? T.ORTHOGRAPHIC : T.STACK,
      element: p.element,
      defaultOptions: { background: [0, 0, 0], ...(p.orientation ? { orientation: core.Enums.OrientationAxis[p.orientation.toUpperCase()] } : {}) },
    })));
    for (const p of this.panes) {
      p.viewport = this.engine.getViewport(p.id);
      this.group.addViewport(p.id, this.engine.id);
    }
    if (this.mode === "mpr") {
      const volumeId = `cornerstoneStreamingImageVolume:${this.uid}:${main.series}`;
      this.volumeId = volumeId;
      const volume = await core.volumeLoader.createAndCacheVolume(volumeId, { imageIds: main.imageIds });
      volume.load();
      await core.setVolumesForViewports(this.engine, [{ volumeId }], this.panes.map((p) => p.id));
      for (const p of this.panes) this.applySlab(p);
    } else {
      this.linkBase = null;
      this.echoes = new Map();
      // The rest of each stack is loaded in the background, nearest slices first, once its
      // first image is drawn: started before, its 300 requests and decodes delay that draw.
      for (const p of this.panes) {
        p.element.addEventListener(core.Enums.Events.IMAGE_RENDERED, () => {
          if (this.panes.includes(p) && !p.orientation) this.cs.tools.utilities.stackPrefetch.enable(p.element);
        }, { once: true });
      }
      await Promise.all(this.panes.map((p) => p.viewport.setStack(p.data.imageIds, 0)));
    }
    // Fit each image to its viewport now that the layout has its final size.
    this.engine.resize(true, false);
    for (const p of this.panes) {
      this.applyWindow(p);
      p.viewport.render();
    }
    this.setActive(0);
    this.setLoading(false);
    this.renderButtons();
    this.renderMeasures();
  }

  /**
   * Until Cornerstone3D is ready, the first slice as the archive renders it (PNG,
   * full size, the file's window; firstimage.js), in a pane like the viewport's, the
   * image fitted as the viewport fits it, with the banner, the orientation markers,
   * the slice and the window the viewport will show; the tools disabled meanwhile.
   * A slice the archive cannot render is said in words, never a broken image.
   */
  async showPreview(study, series) {
    this.setLoading(true);
    const o = overlayElements();
    const canvas = h("div", { class: "viewer-canvas", id: "viewer-preview", role: "img", "aria-label": t("viewer.canvas"), dataset: { state: "loading" } });
    const note = h("div", { class: "ov ov-loading", role: "status" }, t("viewer.loading_tools"));
    const el = h("div", { class: "viewer-pane viewer-preview active" }, canvas, ...Object.values(o), note);
    const preview = { el };
    this.preview?.el.remove();
    this.preview = preview;
    this.stage.append(el);
    const found = await firstImageOf(series);
    if (this.preview !== preview) return;
    if (!found || found.error) {
      canvas.dataset.state = found?.error || "none";
      if (found?.error === "failed") note.textContent = `${t("viewer.preview_failed")} ${t("viewer.loading_tools")}`;
      firstImageDone();
      return;
    }
    const base = `${location.origin}/dicomweb/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
    const data = seriesFromMetadata(base, study, series, [found.ds]);
    const img = h("img", { src: found.url, alt: "", class: "preview-img", draggable: "false" });
    canvas.append(img);
    const box = fitBox(found.ds, found.width, found.height, canvas.clientWidth, canvas.clientHeight);
    [img.style.left, img.style.top, img.style.width, img.style.height] = box.map((x) => `${x}px`);
    canvas.dataset.imageBox = box.map((x) => x.toFixed(2)).join(",");
    canvas.dataset.state = "shown";
    canvas.dataset.slice = "1";
    setLines(o.banner, bannerLines(data));
    const iop = (found.ds["00200037"]?.Value || []).map(Number);
    if (iop.length === 6) {
      const names = oriNames();
      const right = iop.slice(0, 3);
      const down = iop.slice(3, 6);
      o.right.textContent = orientationLetters(right, names);
      o.left.textContent = orientationLetters(right.map((x) => -x), names);
      o.bottom.textContent = orientationLetters(down, names);
      o.top.textContent = orientationLetters(down.map((x) => -x), names);
    }
    const n = found.info.instances;
    const ipp = (found.ds["00200032"]?.Value || []).map(Number);
    const where = Number(found.ds["00201041"]?.Value?.[0] ?? ipp[2]);
    o.slice.textContent = sliceText(0, n, Number.isFinite(where) ? where : null, data.thickness);
    const win = data.window?.map(Math.round);
    if (win) {
      o.window.textContent = t("viewer.wl", { c: win[0], w: win[1], z: (1).toFixed(1) });
      canvas.dataset.window = `${win[0]},${win[1]}`;
    }
    this.info.textContent = t("viewer.info", { i: 1, n, c: win?.[0] ?? "", w: win?.[1] ?? "", z: (1).toFixed(1) });
    // On screen at the next frame: then the library may take the main thread.
    requestAnimationFrame(() => setTimeout(() => {
      if (this.preview === preview) mark("viewer:preview-shown");
      firstImageDone();
    }));
  }

  /** Cornerstone3D has drawn (or the series cannot be shown): the archive's image goes. */
  endPreview() {
    if (!this.preview) return;
    this.preview.el.remove();
    this.preview = null;
    firstImageDone();
  }

  /** The tools are disabled, and say so, until the library is ready. */
  setLoading(on) {
    this.toolbar.setAttribute("aria-busy", on ? "true" : "false");
    for (const c of this.toolbar.querySelectorAll("button, input, select")) c.disabled = on;
  }

  makePane(spec, i) {
    const { core } = this.cs;
    const id = `${this.uid}-vp${i}`;
    const element = h("div", {
      class: "viewer-canvas", id: i === 0 ? "viewer-canvas" : `viewer-canvas-${i}`, tabindex: "0", role: "img",
      "aria-label": t("viewer.canvas"), dataset: { pane: String(i), orientation: spec.orientation || "stack" },
    });
    element.addEventListener("contextmenu", (ev) => ev.preventDefault());
    element.addEventListener("pointerdown", () => this.setActive(i));
    const o = overlayElements();
    const el = h("div", { class: "viewer-pane", dataset: { pane: String(i) } }, element, ...Object.values(o));
    this.stage.append(el);
    const pane = { id, el, element, overlay: o, data: spec.data, orientation: spec.orientation || null, index: i };
    element.addEventListener(core.Enums.Events.IMAGE_RENDERED, () => {
      mark("viewer:first-image");
      this.overlay(pane);
      this.endPreview();
      this.remeasure();
    });
    element.addEventListener(core.Enums.Events.STACK_NEW_IMAGE, () => this.follow(pane));
    element.addEventListener(core.Enums.Events.VOLUME_NEW_IMAGE, () => this.overlay(pane));
    return pane;
  }

  /** The text drawn over a viewport: banner, orientation, slice, window and zoom. */
  overlay(pane) {
    const vp = pane.viewport;
    if (!vp || !pane.data) return;
    const { core } = this.cs;
    const o = pane.overlay;
    const lines = bannerLines(pane.data);
    if (pane.orientation) lines.push(t(`viewer.plane.${pane.orientation}`) + (this.mip && this.slab ? ` · MIP ${this.slab} mm` : this.slab ? ` · ${t("viewer.slab.mm", { mm: this.slab })}` : ""));
    setLines(o.banner, lines);
    const names = oriNames();
    const [w, hgt] = [pane.element.clientWidth, pane.element.clientHeight];
    try {
      const c = vp.canvasToWorld([w / 2, hgt / 2]);
      const r = vp.canvasToWorld([w / 2 + 10, hgt / 2]);
      const d = vp.canvasToWorld([w / 2, hgt / 2 + 10]);
      const right = unit(sub(r, c));
      const down = unit(sub(d, c));
      o.right.textContent = orientationLetters(right, names);
      o.left.textContent = orientationLetters(right.map((x) => -x), names);
      o.bottom.textContent = orientationLetters(down, names);
      o.top.textContent = orientationLetters(down.map((x) => -x), names);
    } catch {
      /* no image yet */
    }
    let index = 0;
    let n = 0;
    let position = null;
    if (pane.orientation) {
      index = vp.getSliceIndex?.() ?? 0;
      n = vp.getNumberOfSlices?.() ?? 0;
      const cam = vp.getCamera();
      position = cam.focalPoint && cam.viewPlaneNormal ? Math.abs(cam.viewPlaneNormal[2]) > 0.9 ? cam.focalPoint[2] : null : null;
    } else {
      index = vp.getCurrentImageIdIndex();
      n = pane.data.imageIds.length;
      const plane = core.metaData.get("imagePlaneModule", pane.data.imageIds[index]);
      position = plane?.sliceLocation ?? plane?.imagePositionPatient?.[2] ?? null;
    }
    o.slice.textContent = sliceText(index, n, position, this.slab || pane.data.thickness);
    const win = this.windowOf(pane);
    const zoom = vp.getZoom ? vp.getZoom() : 1;
    o.window.textContent = win ? t("viewer.wl", { c: win[0], w: win[1], z: zoom.toFixed(1) }) : "";
    pane.element.dataset.slice = String(index + 1);
    if (win) pane.element.dataset.window = `${win[0]},${win[1]}`;
    this.imageBox(pane);
    if (pane.index === this.active) {
      this.slider.max = String(Math.max(n, 1));
      this.slider.value = String(index + 1);
      this.info.textContent = t("viewer.info", { i: index + 1, n, c: win?.[0] ?? "", w: win?.[1] ?? "", z: zoom.toFixed(1) });
      this.renderKey();
    }
  }

  /** Where the image lies on the page, for tests and screen readers: data-image-box="x,y,w,h" in CSS pixels. */
  imageBox(pane) {
    if (pane.orientation) return;
    const { core } = this.cs;
    const id = pane.data.imageIds[pane.viewport.getCurrentImageIdIndex()];
    const plane = core.metaData.get("imagePlaneModule", id);
    if (!plane?.imagePositionPatient || !plane.rowCosines) return;
    const sp = [plane.columnPixelSpacing || 1, plane.rowPixelSpacing || 1];
    const ipp = plane.imagePositionPatient;
    const at = (cx, ry) => [0, 1, 2].map((k) => ipp[k] + (cx * sp[0]) * plane.rowCosines[k] + (ry * sp[1]) * plane.columnCosines[k]);
    // The outer edges of the first and last pixels (a pixel's position is its centre).
    const a = pane.viewport.worldToCanvas(at(-0.5, -0.5));
    const z = pane.viewport.worldToCanvas(at(plane.columns - 0.5, plane.rows - 0.5));
    pane.element.dataset.imageBox = [a[0], a[1], z[0] - a[0], z[1] - a[1]].map((x) => x.toFixed(2)).join(",");
  }

  windowOf(pane) {
    const { core } = this.cs;
    const range = pane.viewport.getProperties?.()?.voiRange;
    if (!range) return null;
    const { windowCenter, windowWidth } = core.utilities.windowLevel.toWindowLevel(range.lower, range.upper);
    return [Math.round(windowCenter), Math.round(windowWidth)];
  }

  applyWindow(pane) {
    const w = this.window || pane.data.window;
    if (!w) return;
    const { core } = this.cs;
    pane.viewport.setProperties({ voiRange: core.utilities.windowLevel.toLowHighRange(w[1], w[0]) });
  }

  setWindow(window, presetName) {
    this.window = [Math.round(window[0]), Math.max(1, Math.round(window[1]))];
    this.windowSet = true;
    for (const b of this.toolbar.querySelectorAll(".preset")) b.setAttribute("aria-pressed", b.dataset.preset === presetName ? "true" : "false");
    for (const p of this.panes) {
      this.applyWindow(p);
      p.viewport.render();
    }
  }

  setTool(name) {
    if (!TOOLS[name]) return;
    this.tool = name;
    for (const b of this.toolbar.querySelectorAll(".tool")) b.setAttribute("aria-pressed", b.dataset.tool === name ? "true" : "false");
    if (this.group) this.bindTools();
  }

  async setMode(mode) {
    if (mode === this.mode || !this.series[0]) return;
    if (mode === "mpr" && !this.series[0].volumeReady) {
      this.info.textContent = t("viewer.no_mpr");
      return;
    }
    this.mode = mode;
    await this.build();
  }

  setSlab(mm) {
    this.slab = mm;
    for (const p of this.panes) this.applySlab(p);
  }

  setMip(on) {
    this.mip = on;
    if (on && !this.slab) {
      this.slab = 10;
      this.slabSelect.value = "10";
    }
    for (const p of this.panes) this.applySlab(p);
  }

  applySlab(pane) {
    if (!pane.orientation) return;
    const { core } = this.cs;
    const B = core.Enums.BlendModes;
    pane.viewport.setBlendMode(this.mip ? B.MAXIMUM_INTENSITY_BLEND : B.COMPOSITE);
    pane.viewport.setSlabThickness(this.slab || 0.1);
    pane.viewport.render();
  }

  setLayout(n) {
    if (n === 1) {
      this.series[1] = null;
      if (this.mode === "stack") this.build();
    } else if (!this.series[1] && this.series[0]) {
      // Two viewports of the same series until a prior or another series is chosen.
      this.series[1] = { ...this.series[0], label: "" };
      this.mode = "stack";
      this.build();
    }
  }

  setLinked(on) {
    this.linked = on;
    this.linkBase = null;
  }

  setActive(i) {
    this.active = Math.min(i, this.panes.length - 1);
    for (const p of this.panes) p.el.classList.toggle("active", p.index === this.active);
    const pane = this.panes[this.active];
    if (pane) this.overlay(pane);
  }

  /**
   * Linked scrolling: the other stack follows, keeping the offset (in mm when both have
   * positions, else in slices) it had when the two were linked. The moves the viewer
   * makes itself are remembered so that their echo does not drive the first one back.
   */
  follow(pane) {
    this.overlay(pane);
    if (this.mode !== "stack" || this.panes.length < 2) return;
    const i = pane.viewport.getCurrentImageIdIndex();
    const echoes = (this.echoes ||= new Map());
    const mine = echoes.get(pane.index);
    if (mine?.has(i)) {
      mine.delete(i);
      return;
    }
    const other = this.panes[1 - pane.index];
    if (!other?.viewport) return;
    const j = other.viewport.getCurrentImageIdIndex();
    const a = pane.data;
    const b = other.data;
    const spatial = a.spatial && b.spatial;
    if (!this.linked || !this.linkBase) {
      // Unlinked scrolling moves one stack: the offset is taken again when linked.
      this.linkBase = this.linked ? { offset: spatial ? b.positions[j] - a.positions[i] : j - i, from: pane.index } : null;
      if (this.linked) return;
      return;
    }
    const sign = pane.index === this.linkBase.from ? 1 : -1;
    let target;
    if (spatial) target = nearest(b.positions, a.positions[i] + sign * this.linkBase.offset);
    else target = i + sign * this.linkBase.offset;
    target = Math.max(0, Math.min(b.imageIds.length - 1, target));
    if (target === j) return;
    if (!echoes.has(other.index)) echoes.set(other.index, new Set());
    echoes.get(other.index).add(target);
    other.viewport.setImageIdIndex(target);
  }

  async jump(paneIndex, index) {
    const pane = this.panes[paneIndex];
    if (!pane?.viewport) return;
    const { core } = this.cs;
    if (pane.orientation) {
      const n = pane.viewport.getNumberOfSlices();
      await core.utilities.jumpToSlice(pane.element, { imageIndex: Math.max(0, Math.min(n - 1, index)) });
    } else {
      const n = pane.data.imageIds.length;
      await pane.viewport.setImageIdIndex(Math.max(0, Math.min(n - 1, index)));
    }
  }

  step(delta) {
    const pane = this.panes[this.active];
    if (!pane?.viewport) return;
    const { core } = this.cs;
    if (pane.orientation) core.utilities.scroll(pane.viewport, { delta, volumeId: this.volumeId });
    else this.jump(this.active, pane.viewport.getCurrentImageIdIndex() + delta);
  }

  toggleCine() {
    if (this.cine) this.stopCine();
    else {
      const pane = this.panes[this.active];
      if (!pane) return;
      this.cineButton.setAttribute("aria-pressed", "true");
      this.cine = setInterval(() => {
        const vp = pane.viewport;
        const n = pane.orientation ? vp.getNumberOfSlices() : pane.data.imageIds.length;
        const i = pane.orientation ? vp.getSliceIndex() : vp.getCurrentImageIdIndex();
        this.jump(pane.index, (i + 1) % Math.max(n, 1));
      }, 1000 / 12);
    }
  }

  stopCine() {
    if (this.cine) clearInterval(this.cine);
    this.cine = null;
    this.cineButton.setAttribute("aria-pressed", "false");
  }

  zoomBy(f) {
    const pane = this.panes[this.active];
    if (!pane?.viewport) return;
    pane.viewport.setZoom(pane.viewport.getZoom() * f);
    pane.viewport.render();
  }

  reset() {
    this.window = null;
    for (const b of this.toolbar.querySelectorAll(".preset")) b.setAttribute("aria-pressed", "false");
    for (const p of this.panes) {
      p.viewport.resetCamera();
      p.viewport.resetProperties?.();
      this.applyWindow(p);
      p.viewport.render();
    }
  }

  clearMeasurements() {
    const { tools } = this.cs || {};
    if (!tools) return;
    for (const a of this.annotations()) tools.annotation.state.removeAnnotation(a.annotationUID);
    for (const p of this.panes) p.viewport.render();
    this.renderMeasures();
  }

  annotations() {
    const { tools } = this.cs;
    const mine = new Set(this.panes.map((p) => p.element));
    return (tools.annotation.state.getAllAnnotations() || []).filter((a) => ANNOTATIONS.includes(a.metadata?.toolName)
      && (!a.metadata?.viewportId || this.panes.some((p) => p.id === a.metadata.viewportId) || mine.size === 0));
  }

  /** The measurements as text under the image (and as data-value for tests). */
  renderMeasures() {
    if (!this.cs) return;
    const items = [];
    for (const a of this.annotations()) {
      const stats = Object.values(a.data?.cachedStats || {})[0];
      if (!stats) continue;
      const tool = a.metadata.toolName;
      let text = "";
      let value = null;
      if (tool === "Probe" && Number.isFinite(stats.value)) {
        value = stats.value;
        text = t("viewer.m.probe", { v: fmt(value, 0), unit: unitName(stats.modalityUnit) });
      } else if (tool === "Length" && Number.isFinite(stats.length)) {
        value = stats.length;
        text = t("viewer.m.length", { v: fmt(value, 1), unit: stats.unit || "mm" });
      } else if (tool === "Angle" && Number.isFinite(stats.angle)) {
        value = stats.angle;
        text = t("viewer.m.angle", { v: fmt(value, 1) });
      } else if (tool === "EllipticalROI" && Number.isFinite(stats.mean)) {
        value = stats.mean;
        text = t("viewer.m.ellipse", {
          mean: fmt(stats.mean, 1), sd: fmt(stats.stdDev, 1), area: fmt(stats.area, 1), unit: unitName(stats.modalityUnit),
          areaUnit: (stats.areaUnit || "mm²").replace("mm2", "mm²"),
        });
      }
      if (text) items.push(h("li", { dataset: { tool, value: String(value), sd: String(stats.stdDev ?? ""), area: String(stats.area ?? "") } }, `${t(`viewer.m.${tool}`)} : ${text}`));
    }
    clear(this.measures, ...items);
  }

  key(ev) {
    const target = ev.target;
    if (target instanceof HTMLInputElement && target.type !== "checkbox" && target.type !== "range") return;
    if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const names = Object.keys(PRESETS);
    const pane = this.panes[this.active];
    const count = pane ? (pane.orientation ? pane.viewport.getNumberOfSlices() : pane.data.imageIds.length) : 0;
    const actions = {
      ArrowDown: () => this.step(1),
      ArrowRight: () => this.step(1),
      ArrowUp: () => this.step(-1),
      ArrowLeft: () => this.step(-1),
      PageDown: () => this.step(10),
      PageUp: () => this.step(-10),
      Home: () => this.jump(this.active, 0),
      End: () => this.jump(this.active, count - 1),
      "+": () => this.zoomBy(1.2),
      "=": () => this.zoomBy(1.2),
      "-": () => this.zoomBy(1 / 1.2),
      r: () => this.reset(),
      c: () => this.toggleCine(),
      m: () => this.setMode(this.mode === "mpr" ? "stack" : "mpr"),
      k: () => this.toggleKey(),
      Tab: null,
    };
    const preset = Number(ev.key);
    if (preset >= 1 && preset <= names.length) {
      this.setWindow(PRESETS[names[preset - 1]], names[preset - 1]);
      ev.preventDefault();
      return;
    }
    if (KEY_TOOLS[ev.key]) {
      this.setTool(KEY_TOOLS[ev.key]);
      ev.preventDefault();
      return;
    }
    if (actions[ev.key]) {
      actions[ev.key]();
      ev.preventDefault();
    }
  }

  /** The image shown in the active stack viewport: its id, SOP instance UID and frame. */
  currentImage() {
    const pane = this.panes[this.active];
    if (!pane || pane.orientation || pane.index !== 0) return null;
    const imageId = pane.data.imageIds[pane.viewport.getCurrentImageIdIndex()];
    return imageId ? { imageId, ...imageRef(imageId) } : null;
  }

  /** Mark (or unmark) the displayed image of the current series as a key image. */
  toggleKey() {
    const cur = this.currentImage();
    if (!cur?.sop_instance_uid) return;
    if (this.keys.has(cur.imageId)) this.keys.delete(cur.imageId);
    else this.keys.set(cur.imageId, { sop_instance_uid: cur.sop_instance_uid, frame: cur.frame });
    this.renderKey();
  }

  renderKey() {
    const cur = this.currentImage();
    const on = Boolean(cur && this.keys.has(cur.imageId));
    this.keyButton.setAttribute("aria-pressed", on ? "true" : "false");
    this.keyButton.textContent = `${t("viewer.key")} (${this.keys.size})`;
    for (const p of this.panes) p.el.classList.toggle("key-image", on && p.index === 0 && !p.orientation);
  }

  /**
   * What the server builds the KO and the SR from (docs/api.md "Key images and
   * measurements"): the marked images; the lengths and elliptical ROIs drawn on the
   * current study's images, their points in DICOM image coordinates (column, row; the
   * top left corner of the image at 0, 0: Cornerstone3D's image coordinates).
   */
  keyObjectsBody() {
    const { core } = this.cs;
    const mine = this.series[0]?.study;
    const measurements = [];
    for (const a of this.annotations()) {
      const tool = a.metadata?.toolName;
      const imageId = a.metadata?.referencedImageId;
      const stats = Object.values(a.data?.cachedStats || {})[0];
      if (!imageId || !stats || !imageId.includes(`/studies/${encodeURIComponent(mine)}/`)) continue;
      const ref = imageRef(imageId);
      const points = (a.data.handles.points || []).map((p) => core.utilities.worldToImageCoords(imageId, p).map((x) => Math.max(0, x)));
      if (tool === "Length" && Number.isFinite(stats.length)) {
        measurements.push({ type: "length", ...ref, points, length_mm: stats.length });
      } else if (tool === "EllipticalROI" && Number.isFinite(stats.mean)) {
        // Cornerstone3D's handles are the ends of the vertical then the horizontal axis.
        const [bottom, top, left, right] = points;
        const horizontal = Math.hypot(right[0] - left[0], right[1] - left[1]);
        const vertical = Math.hypot(top[0] - bottom[0], top[1] - bottom[1]);
        const axes = horizontal >= vertical ? [left, right, bottom, top] : [bottom, top, left, right];
        measurements.push({
          type: "ellipse", ...ref, points: axes, area_mm2: stats.area, mean: stats.mean, sd: stats.stdDev,
          unit: stats.modalityUnit === "HU" ? "HU" : "",
        });
      }
    }
    return { key_images: [...this.keys.values()], measurements };
  }

  async saveKeyObjects() {
    if (!this.examId || !this.cs) return;
    const body = this.keyObjectsBody();
    if (!body.key_images.length && !body.measurements.length) {
      this.saveStatus.textContent = t("viewer.save_nothing");
      return;
    }
    this.saveButton.disabled = true;
    try {
      const out = await api.saveKeyObjects(this.examId, body);
      this.saveStatus.textContent = t("viewer.saved", { keys: body.key_images.length, m: body.measurements.length });
      this.saveStatus.dataset.saved = Object.keys(out).join(",");
      this.keys.clear();
      this.renderKey();
      this.onSaved?.();
    } catch (err) {
      this.saveStatus.textContent = `${t("viewer.save_failed")} ${err.message || ""}`;
    } finally {
      this.saveButton.disabled = false;
    }
  }

  renderButtons() {
    this.saveButton.hidden = !this.canSave;
    this.keyButton.hidden = !this.canSave;
    for (const b of this.modeButtons) b.setAttribute("aria-pressed", b.dataset.mode === this.mode ? "true" : "false");
    for (const b of this.layoutButtons) b.setAttribute("aria-pressed", Number(b.dataset.layout) === (this.mode === "stack" ? this.panes.length : 0) ? "true" : "false");
    this.modeButtons[1].disabled = !this.series[0]?.volumeReady;
  }

  destroy() {
    this.endPreview();
    this.stopCine();
    if (!this.cs) return;
    const { core, tools } = this.cs;
    for (const ev of ["ANNOTATION_COMPLETED", "ANNOTATION_MODIFIED", "ANNOTATION_REMOVED"]) {
      core.eventTarget.removeEventListener(tools.Enums.Events[ev], this.onAnnotation);
    }
    this.resizer.disconnect();
    tools.ToolGroupManager.destroyToolGroup(this.group.id);
    this.engine.destroy();
    core.cache.purgeCache();
    this.series = [null, null];
    clear(this.stage);
  }
}

/** The texts drawn over a viewport (the preview's are the same elements). */
function overlayElements() {
  return {
    banner: h("div", { class: "ov ov-banner" }),
    top: h("div", { class: "ov ov-ori ori-top", dataset: { side: "top" } }),
    bottom: h("div", { class: "ov ov-ori ori-bottom", dataset: { side: "bottom" } }),
    left: h("div", { class: "ov ov-ori ori-left", dataset: { side: "left" } }),
    right: h("div", { class: "ov ov-ori ori-right", dataset: { side: "right" } }),
    slice: h("div", { class: "ov ov-slice" }),
    window: h("div", { class: "ov ov-window" }),
  };
}

/** Patient, study and series, as the banner shows them. */
function bannerLines(data) {
  const b = data.banner;
  const lines = [
    [b.patient, b.patientId && `(${b.patientId})`, b.sex, b.birth && formatDate(b.birth)].filter(Boolean).join(" "),
    [b.studyDate && formatDate(b.studyDate), b.studyDescription].filter(Boolean).join(" · "),
    [b.modality, b.seriesNumber !== "" ? t("viewer.series_n", { n: b.seriesNumber }) : "", b.seriesDescription].filter(Boolean).join(" "),
  ];
  if (data.label) lines.unshift(data.label);
  return lines;
}

function sliceText(index, n, position, thickness) {
  return [
    t("viewer.slice_n", { i: index + 1, n }),
    position !== null && position !== undefined ? t("viewer.position", { mm: fmt(position, 1) }) : "",
    thickness ? t("viewer.thickness", { mm: fmt(thickness, 1) }) : "",
  ].filter(Boolean).join(" · ");
}

function oriNames() {
  return { L: t("ori.L"), R: t("ori.R"), A: t("ori.A"), P: t("ori.P"), S: t("ori.S"), I: t("ori.I") };
}

/**
 * Where a stack viewport draws a whole image when it fits it (Cornerstone3D's reset
 * camera): the image's extent in mm (PixelSpacing, PS3.3 C.7.6.2.1) scaled to fit the
 * element, centred: [x, y, width, height] in CSS pixels.
 */
function fitBox(ds, columns, rows, width, height) {
  const [rowSpacing, colSpacing] = (ds["00280030"]?.Value || [1, 1]).map(Number);
  const w = columns * (colSpacing || 1);
  const hh = rows * (rowSpacing || 1);
  const scale = Math.min(width / w, height / hh);
  return [(width - w * scale) / 2, (height - hh * scale) / 2, w * scale, hh * scale];
}

/** The SOP instance UID and frame of a `wadors:` image id (…/instances/<uid>/frames/<n>). */
function imageRef(imageId) {
  const m = /\/instances\/([^/]+)\/frames\/(\d+)/.exec(imageId);
  return m ? { sop_instance_uid: decodeURIComponent(m[1]), frame: Number(m[2]) } : {};
}

function setLines(el, lines) {
  clear(el, ...lines.filter(Boolean).map((l) => h("div", {}, l)));
}

function formatDate(d) {
  return /^\d{8}$/.test(d) ? `${d.slice(6, 8)}/${d.slice(4, 6)}/${d.slice(0, 4)}` : d;
}

function unitName(u) {
  return u || "";
}

function fmt(x, digits) {
  return formatNumber(x, digits, document.documentElement.lang || "fr");
}

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const unit = (a) => {
  const n = Math.hypot(...a) || 1;
  return a.map((x) => x / n);
};

function nearest(positions, want) {
  let best = 0;
  for (let k = 1; k < positions.length; k += 1) if (Math.abs(positions[k] - want) < Math.abs(positions[best] - want)) best = k;
  return best;
}
