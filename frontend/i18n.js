// Translations. French is the default (the users are French hospitals); English is
// available from the language picker and remembered in localStorage.
import { fr } from "./lang-fr.js";
import { en } from "./lang-en.js";

const DICTS = { fr, en };
let lang = "fr";
const listeners = new Set();

export function initLang() {
  const saved = localStorage.getItem("ti.lang");
  lang = saved && DICTS[saved] ? saved : "fr";
  document.documentElement.lang = lang;
  return lang;
}

export function getLang() {
  return lang;
}

export function setLang(next) {
  if (!DICTS[next] || next === lang) return;
  lang = next;
  localStorage.setItem("ti.lang", next);
  document.documentElement.lang = next;
  for (const fn of listeners) fn(next);
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** t("room.sent", {n: 3}) — a missing key falls back to French, then to the key itself. */
export function t(key, params = {}) {
  let text = DICTS[lang][key] ?? fr[key] ?? key;
  for (const [name, value] of Object.entries(params)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

/** A server error in words (docs/api.md "Error codes"): never the raw code or English message. */
export function errorText(err) {
  const key = `error.${err?.code}`;
  if (err?.code && t(key) !== key) return t(key);
  return err?.status ? t("error.other") : t("error.network");
}

/** "Scanner (CT) · Crâne / encéphale" rather than "CT HEAD". */
export function examLabel(modality, bodyPart) {
  const m = t(`modality.${modality}`);
  const b = t(`body.${bodyPart}`);
  return `${m === `modality.${modality}` ? modality : m} · ${b === `body.${bodyPart}` ? bodyPart : b}`;
}

/** An escalation reason code in words (rooms/escalation.py "Reason"). */
export function reasonText(code) {
  const key = `reason.${code}`;
  return code && t(key) !== key ? t(key) : code || "";
}

export function locale() {
  return lang === "fr" ? "fr-FR" : "en-GB";
}

/**
 * "09:04", local time: what toLocaleTimeString gives for both languages (24 h, two
 * digits), written by hand because the browser's first date formatter with options
 * costs ~20 ms of the main thread (ICU's pattern generator), in the room's header
 * before its first image (docs/benchmarks.md "Viewer").
 */
export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}`;
}

/**
 * A number with `digits` decimals as `toLocaleString(lang, {minimum- and
 * maximumFractionDigits})` writes it in French ("12,5") or English ("12.5"), by hand for
 * values under 1000 (no grouping): the browser's first number formatter loads its locale
 * data, ~20 ms of the main thread, and the viewer writes a slice's position with its
 * first image (docs/benchmarks.md "Viewer"). Rounded as the browser rounds: the shortest
 * decimal that reads back as the number (String(x)), half away from zero, so 0.15 gives
 * 0.2 where toFixed gives 0.1; the sign kept on a negative value rounded to 0 ("-0,0").
 */
export function formatNumber(x, digits, lang) {
  const n = Number(x);
  const byBrowser = () => n.toLocaleString(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const text = String(Math.abs(n));
  if (!Number.isFinite(n) || Math.abs(n) >= 1000 || text.includes("e")) return byBrowser();
  const [whole, fraction = ""] = text.split(".");
  const kept = `${whole}${fraction.padEnd(digits + 1, "0").slice(0, digits + 1)}`;
  const scaled = Number(kept.slice(0, -1)) + (Number(kept.at(-1)) >= 5 ? 1 : 0);
  if (scaled >= 1000 * 10 ** digits) return byBrowser(); // rounded up to 1000: grouped
  const all = String(scaled).padStart(digits + 1, "0");
  const body = digits ? `${all.slice(0, -digits)}${lang === "en" ? "." : ","}${all.slice(-digits)}` : all;
  return `${n < 0 || Object.is(n, -0) ? "-" : ""}${body}`;
}

export function formatDateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(locale(), {
    day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit",
  });
}

export function formatDate(isoDate) {
  if (!isoDate) return "";
  const [y, m, d] = isoDate.split("-");
  return lang === "fr" ? `${d}/${m}/${y}` : `${y}-${m}-${d}`;
}

/** Age in whole years from a birth date (clinicians read age, not birth dates). */
export function age(isoDate) {
  const b = new Date(isoDate);
  const now = new Date();
  let years = now.getFullYear() - b.getFullYear();
  if (now < new Date(now.getFullYear(), b.getMonth(), b.getDate())) years -= 1;
  return years;
}

/** "12:04" for a duration in seconds, with a sign when it is past. */
export function formatCountdown(seconds) {
  const late = seconds < 0;
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const body = h ? `${h} h ${String(m).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
  return late ? `+${body}` : body;
}
