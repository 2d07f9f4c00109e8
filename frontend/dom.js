// Tiny DOM helpers: building elements without innerHTML (no injection of patient
// text), and toasts. No inline styles anywhere: the CSP forbids them.

/** h("button", {class: "btn", onclick: fn, "aria-label": "..."}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (name === "value") {
      el.value = value;
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

let toastSeq = 0;

/** A short message in the alert zone; kind: info | ok | warn | danger. */
export function toast(text, kind = "info", ms = 6000) {
  const zone = document.getElementById("alerts");
  const id = `toast-${++toastSeq}`;
  const item = h("div", { class: `toast toast-${kind}`, id, role: "status" }, text,
    h("button", { type: "button", class: "toast-close", "aria-label": "×", onclick: () => item.remove() }, "×"));
  zone.append(item);
  if (ms) setTimeout(() => item.remove(), ms);
  return item;
}

/** Debounce a function: called once, `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.flush = (...args) => {
    clearTimeout(timer);
    fn(...args);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** A short two-tone beep made in the browser (no sound file to fetch). */
export function beep() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    const ctx = new Ctx();
    const gain = ctx.createGain();
    gain.gain.value = 0.15;
    gain.connect(ctx.destination);
    [880, 1320].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      osc.frequency.value = freq;
      osc.connect(gain);
      osc.start(ctx.currentTime + i * 0.18);
      osc.stop(ctx.currentTime + i * 0.18 + 0.15);
    });
    setTimeout(() => ctx.close(), 800);
  } catch {
    // Sound is a courtesy; the visible alert is what counts.
  }
}
