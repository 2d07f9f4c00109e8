// The coordinator's monthly stroke figures (docs/stroke.md "Figures"): per site, the
// alerts and the p50 / p90 of each interval of the pathway.
import { api } from "./api.js";
import { h, clear } from "./dom.js";
import { t } from "./i18n.js";

const INTERVALS = ["onset_to_request", "request_to_first_image", "first_image_to_report"];

function minutes(s) {
  return s === null || s === undefined ? "—" : `${Math.round(s / 60)} min`;
}

export function strokeStatsPanel() {
  const month = h("input", { id: "stroke-month", type: "month", value: new Date().toISOString().slice(0, 7) });
  const body = h("tbody");
  const table = h("table", { class: "stroke-stats", id: "stroke-stats" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, t("stroke.stats.site")),
      h("th", { scope: "col" }, t("stroke.stats.alerts")),
      ...INTERVALS.map((i) => h("th", { scope: "col" }, `${t(`stroke.stats.${i}`)} (p50 / p90)`)))),
    body);
  async function load() {
    try {
      const data = await api.strokeStats(month.value);
      const rows = Object.entries(data.establishments).map(([code, s]) => [code, s]);
      rows.push([t("stroke.stats.all"), data.all]);
      clear(body, rows.map(([code, s]) => h("tr", {},
        h("th", { scope: "row" }, code), h("td", {}, String(s.alerts)),
        ...INTERVALS.map((i) => h("td", {}, `${minutes(s.intervals[i].p50_s)} / ${minutes(s.intervals[i].p90_s)}`)))));
    } catch {
      clear(body, h("tr", {}, h("td", { colspan: 5 }, t("worklist.load_failed"))));
    }
  }
  month.addEventListener("change", load);
  load();
  return h("details", { class: "card stroke-stats-card" },
    h("summary", {}, t("stroke.stats.title")),
    h("label", { for: "stroke-month" }, t("stroke.stats.month")), " ", month, table);
}
