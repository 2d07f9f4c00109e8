// The stroke clock of the room (docs/stroke.md "The clock"): time since onset (or last
// seen well) and what is left of the thrombolysis and thrombectomy windows.
import { h } from "./dom.js";
import { t } from "./i18n.js";

const WINDOWS = ["thrombolysis_until", "thrombectomy_until", "thrombectomy_selected_until"];

function hm(ms) {
  const m = Math.floor(Math.abs(ms) / 60000);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")}`;
}

export function strokeClock(exam) {
  const s = exam.stroke;
  if (!s) return null;
  return h("div", { class: "stroke-clock", id: "stroke-clock", dataset: { onset: s.onset_at || "", kind: s.onset_kind } },
    h("strong", { class: "stroke-title" }, t("stroke.alert")), " ",
    h("span", { class: "stroke-since" }), " ",
    // An alert from an order without an onset time: no window can be counted.
    ...(s.windows ? WINDOWS.map((w) => h("span", { class: "stroke-window", dataset: { window: w, until: s.windows[w] } })) : []));
}

/** Refresh the clock's figures (every second from the room). */
export function tickStrokeClock(root) {
  const clock = root.querySelector("#stroke-clock");
  if (!clock) return;
  const now = Date.now();
  if (!clock.dataset.onset) {
    clock.querySelector(".stroke-since").textContent = t("stroke.since.unknown");
    return;
  }
  const since = now - Date.parse(clock.dataset.onset);
  clock.querySelector(".stroke-since").textContent = `${t(`stroke.since.${clock.dataset.kind}`)} ${hm(since)}`;
  for (const el of clock.querySelectorAll(".stroke-window")) {
    const left = Date.parse(el.dataset.until) - now;
    el.classList.toggle("closed", left <= 0);
    el.textContent = `${t(`stroke.window.${el.dataset.window}`)} : ${left > 0 ? `${t("deadline.left")} ${hm(left)}` : t("stroke.window.closed")}`;
  }
}
