// The slice viewer: scroll (wheel, keys, slider), window presets, drag for
// window/level, zoom and pan (mouse, touch, keyboard). Pixels come from SeriesSource.
import { h, clear, debounce } from "./dom.js";
import { t } from "./i18n.js";
import { SeriesSource, windowInto } from "./slices.js";

export const PRESETS = {
  brain: [40, 80],
  stroke: [40, 40],
  lung: [-600, 1500],
  bone: [400, 1800],
  abdomen: [50, 400],
};

export class Viewer {
  constructor() {
    this.canvas = h("canvas", { class: "viewer-canvas", id: "viewer-canvas", tabindex: "0", role: "img", "aria-label": t("viewer.canvas") });
    this.info = h("div", { class: "viewer-info", id: "viewer-info", "aria-live": "polite" });
    this.slider = h("input", { type: "range", id: "viewer-slice", min: "1", max: "1", value: "1", "aria-label": t("viewer.slice") });
    this.tool = "wl";
    const presets = Object.keys(PRESETS).map((name) => h("button", {
      type: "button", class: "btn btn-small preset", dataset: { preset: name }, onclick: () => this.setWindow(PRESETS[name], name),
    }, t(`viewer.preset.${name}`)));
    const tools = ["wl", "pan", "zoom"].map((name) => h("button", {
      type: "button", class: "btn btn-small tool", dataset: { tool: name }, "aria-pressed": name === this.tool ? "true" : "false",
      onclick: () => this.setTool(name),
    }, t(`viewer.tool.${name}`)));
    this.toolbar = h("div", { class: "viewer-toolbar", role: "toolbar", "aria-label": t("viewer.tools") },
      h("div", { class: "group" }, ...presets), h("div", { class: "group" }, ...tools,
        h("button", { type: "button", class: "btn btn-small", id: "viewer-reset", onclick: () => this.reset() }, t("viewer.reset"))));
    this.stage = h("div", { class: "viewer-stage" }, this.canvas, this.info);
    this.el = h("div", { class: "viewer", id: "viewer", hidden: true }, this.toolbar, this.stage,
      h("div", { class: "viewer-slider" }, h("label", { for: "viewer-slice" }, t("viewer.slice")), this.slider),
      h("p", { class: "muted small viewer-help" }, t("viewer.help")));
    this.ctx = this.canvas.getContext("2d");
    this.source = null;
    this.index = 0;
    this.window = PRESETS.brain;
    this.zoom = 1;
    this.pan = [0, 0];
    this.current = null;
    this.offscreen = document.createElement("canvas");
    this.bind();
    this.rerender = debounce(() => this.refetchRendered(), 150);
    this.relist = debounce(() => this.reload(), 400);
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(this.stage);
  }

  async open(study, series, count) {
    this.el.hidden = false;
    this.source = new SeriesSource(study, series);
    this.index = 0;
    this.zoom = 1;
    this.pan = [0, 0];
    this.windowSet = false;
    this.expected = count;
    await this.reload();
  }

  async reload() {
    if (!this.source) return;
    const source = this.source;
    let n = 0;
    try {
      n = await source.list();
    } catch {
      this.info.textContent = t("viewer.unavailable");
      return;
    }
    if (source !== this.source) return;
    this.slider.max = String(Math.max(n, 1));
    if (!this.windowSet && source.instances[0]?.window) this.window = source.instances[0].window;
    if (n) this.show(Math.min(this.index, n - 1));
    if (n < (this.expected || 0)) this.relist();
  }

  grow(count) {
    this.expected = count;
    this.relist();
  }

  async show(index) {
    if (!this.source || !this.source.instances.length) return;
    const n = this.source.instances.length;
    this.index = Math.max(0, Math.min(n - 1, index));
    this.slider.value = String(this.index + 1);
    const wanted = this.index;
    try {
      const slice = await this.source.slice(wanted, this.window);
      if (wanted !== this.index) return;
      this.current = slice;
      this.draw();
      this.source.prefetch(wanted, this.window);
    } catch {
      this.info.textContent = t("viewer.unavailable");
    }
  }

  setWindow(window, presetName) {
    this.window = [Math.round(window[0]), Math.max(1, Math.round(window[1]))];
    this.windowSet = true;
    for (const b of this.toolbar.querySelectorAll(".preset")) b.setAttribute("aria-pressed", b.dataset.preset === presetName ? "true" : "false");
    if (this.current?.kind === "bitmap") this.rerender();
    this.draw();
  }

  async refetchRendered() {
    if (!this.source) return;
    const slice = await this.source.rerender(this.index, this.window).catch(() => null);
    if (slice) {
      this.current = slice;
      this.draw();
    }
  }

  setTool(name) {
    this.tool = name;
    for (const b of this.toolbar.querySelectorAll(".tool")) b.setAttribute("aria-pressed", b.dataset.tool === name ? "true" : "false");
  }

  reset() {
    this.zoom = 1;
    this.pan = [0, 0];
    const w = this.source?.instances[this.index]?.window;
    this.setWindow(w || PRESETS.brain, w ? null : "brain");
  }

  draw() {
    const rect = this.stage.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(1, Math.round(rect.width * dpr));
    const ch = Math.max(1, Math.round(rect.height * dpr));
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw;
      this.canvas.height = ch;
    }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cw, ch);
    const s = this.current;
    if (!s) return;
    let img = s.bitmap;
    if (s.kind === "raw") {
      this.offscreen.width = s.width;
      this.offscreen.height = s.height;
      const octx = this.offscreen.getContext("2d");
      const data = octx.createImageData(s.width, s.height);
      windowInto(s, this.window, data);
      octx.putImageData(data, 0, 0);
      img = this.offscreen;
    }
    const fit = Math.min(cw / s.width, ch / s.height) * this.zoom;
    ctx.imageSmoothingEnabled = true;
    ctx.translate(cw / 2 + this.pan[0] * dpr, ch / 2 + this.pan[1] * dpr);
    ctx.drawImage(img, (-s.width * fit) / 2, (-s.height * fit) / 2, s.width * fit, s.height * fit);
    const n = this.source.instances.length;
    this.info.textContent = t("viewer.info", {
      i: this.index + 1, n, c: this.window[0], w: this.window[1], z: this.zoom.toFixed(1),
    });
    this.canvas.dataset.slice = String(this.index + 1);
    this.canvas.dataset.window = `${this.window[0]},${this.window[1]}`;
  }

  bind() {
    const c = this.canvas;
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      if (ev.ctrlKey) this.zoomBy(ev.deltaY < 0 ? 1.1 : 1 / 1.1);
      else this.show(this.index + (ev.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    this.slider.addEventListener("input", () => this.show(Number(this.slider.value) - 1));
    let drag = null;
    c.addEventListener("pointerdown", (ev) => {
      c.setPointerCapture(ev.pointerId);
      const tool = ev.shiftKey || ev.button === 1 ? "pan" : ev.ctrlKey || ev.button === 2 ? "zoom" : this.tool;
      drag = { x: ev.clientX, y: ev.clientY, tool, window: [...this.window], pan: [...this.pan], zoom: this.zoom };
    });
    c.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (drag.tool === "wl") this.setWindow([drag.window[0] + dy * 2, drag.window[1] + dx * 4], null);
      else if (drag.tool === "pan") {
        this.pan = [drag.pan[0] + dx, drag.pan[1] + dy];
        this.draw();
      } else {
        this.zoom = Math.min(10, Math.max(0.25, drag.zoom * Math.exp(-dy / 200)));
        this.draw();
      }
    });
    const end = () => {
      drag = null;
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("contextmenu", (ev) => ev.preventDefault());
    c.addEventListener("keydown", (ev) => this.key(ev));
  }

  zoomBy(f) {
    this.zoom = Math.min(10, Math.max(0.25, this.zoom * f));
    this.draw();
  }

  key(ev) {
    const n = this.source?.instances.length || 0;
    const names = Object.keys(PRESETS);
    const actions = {
      ArrowDown: () => this.show(this.index + 1),
      ArrowRight: () => this.show(this.index + 1),
      ArrowUp: () => this.show(this.index - 1),
      ArrowLeft: () => this.show(this.index - 1),
      PageDown: () => this.show(this.index + 10),
      PageUp: () => this.show(this.index - 10),
      Home: () => this.show(0),
      End: () => this.show(n - 1),
      "+": () => this.zoomBy(1.2),
      "=": () => this.zoomBy(1.2),
      "-": () => this.zoomBy(1 / 1.2),
      r: () => this.reset(),
    };
    const preset = Number(ev.key);
    if (preset >= 1 && preset <= names.length) {
      this.setWindow(PRESETS[names[preset - 1]], names[preset - 1]);
      ev.preventDefault();
      return;
    }
    if (actions[ev.key]) {
      actions[ev.key]();
      ev.preventDefault();
    }
  }

  destroy() {
    this.resizer.disconnect();
    this.source = null;
    clear(this.stage);
  }
}
