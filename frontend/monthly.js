// The monthly site report (docs/accountability.md "Monthly site report"): for one
// establishment and month, the volumes, the delays per stage against the contract,
// the missed deadlines with their escalations and the critical results. The charts
// are PNGs drawn by the server (matplotlib), the same as in the PDF, carried in the
// JSON as data URIs (`charts=png`: one request, one computation). Coordinators.
import { ApiError } from "./api.js";
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";

export const CHARTS = ["modality", "hour", "weekday", "turnaround", "critical"];
const STAGES = ["accept", "protocol", "first_image", "report", "acknowledge"];
const DEADLINES = ["accept", "protocol_ack", "report", "critical"];

async function getJson(path) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = data?.error || {};
    throw new ApiError(resp.status, e.code || `http_${resp.status}`, e.message);
  }
  return data;
}

const minutes = (s) => (s === null || s === undefined ? "—" : `${(s / 60).toFixed(1)} min`);

function lastMonth() {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

export function mountMonthly(container) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const est = h("input", { id: "monthly-establishment", list: "monthly-sites", value: params.get("establishment") || "", size: 10, required: true });
  const sites = h("datalist", { id: "monthly-sites" });
  const month = h("input", { id: "monthly-month", type: "month", value: params.get("month") || lastMonth() });
  const show = h("button", { type: "submit", class: "btn primary" }, t("monthly.show"));
  const out = h("div", { id: "monthly-report", "aria-live": "polite" });
  const form = h("form", { class: "monthly-form", id: "monthly-form" },
    h("label", { for: "monthly-establishment" }, t("monthly.establishment")), " ", est, sites, " ",
    h("label", { for: "monthly-month" }, t("monthly.month")), " ", month, " ", show);
  container.append(h("section", { class: "card", "aria-labelledby": "monthly-title" },
    h("h1", { id: "monthly-title" }, t("monthly.title")),
    h("p", { class: "small muted" }, t("monthly.intro")), form, out));

  getJson("/api/stats/turnaround").then((data) => {
    clear(sites, Object.keys(data.establishments).map((code) => h("option", { value: code })));
  }).catch(() => {});

  async function load() {
    const code = est.value.trim().toUpperCase();
    if (!code) return;
    const q = new URLSearchParams({ establishment: code, month: month.value });
    clear(out, h("p", { class: "muted" }, t("app.loading")));
    let doc;
    try {
      doc = await getJson(`/api/stats/monthly?${q}&charts=png`);
    } catch (err) {
      clear(out, h("p", { class: "error", id: "monthly-error" }, err.message || err.code));
      return;
    }
    const f = doc.figures;
    const chart = (name) => h("figure", { class: `monthly-chart chart-${name}` },
      h("img", { src: doc.charts[name], alt: t(`monthly.chart.${name}`), id: `chart-${name}` }),
      h("figcaption", { class: "small muted" }, t(`monthly.chart.${name}`)));
    const stageRows = STAGES.map((s) => {
      const st = f.stages[s];
      return h("tr", { dataset: { stage: s } },
        h("th", { scope: "row" }, t(`monthly.stage.${s}`)), h("td", {}, String(st.n)),
        h("td", {}, minutes(st.p50_s)), h("td", {}, minutes(st.p90_s)), h("td", {}, minutes(st.p95_s)),
        h("td", {}, st.target_s ? `${minutes(st.target_s)} (${st.within_target}/${st.n})` : "—"));
    });
    const deadlineRows = DEADLINES.map((d) => {
      const dl = f.deadlines[d];
      const levels = Object.entries(dl.escalations).map(([l, n]) => `${t("monthly.level")} ${l} : ${n}`).join(", ") || "—";
      return h("tr", { dataset: { deadline: d } },
        h("th", { scope: "row" }, t(`monthly.deadline.${d}`)), h("td", {}, minutes(dl.target_s)),
        h("td", {}, String(dl.missed)), h("td", {}, levels));
    });
    clear(out,
      h("p", { id: "monthly-summary" },
        t("monthly.summary", { exams: f.volumes.exams, cancelled: f.volumes.cancelled, escalations: f.escalations.raised, critical: f.critical.count }),
        " ", h("a", { href: `/api/stats/monthly.pdf?${q}`, id: "monthly-pdf", target: "_blank", rel: "noopener" }, t("monthly.pdf"))),
      h("div", { class: "monthly-charts" }, chart("modality"), chart("weekday"), chart("hour")),
      h("h2", {}, t("monthly.stages")),
      h("table", { class: "monthly-stages", id: "monthly-stages" },
        h("thead", {}, h("tr", {}, ...["stage", "n", "p50", "p90", "p95", "contract"].map((k) => h("th", { scope: "col" }, t(`monthly.col.${k}`))))),
        h("tbody", {}, ...stageRows)),
      h("div", { class: "monthly-charts" }, chart("turnaround")),
      h("h2", {}, t("monthly.deadlines")),
      h("table", { class: "monthly-deadlines", id: "monthly-deadlines" },
        h("thead", {}, h("tr", {}, ...["deadline", "contract", "missed", "escalations"].map((k) => h("th", { scope: "col" }, t(`monthly.col.${k}`))))),
        h("tbody", {}, ...deadlineRows)),
      h("h2", {}, t("monthly.critical")),
      h("p", {}, t("monthly.critical_summary", { count: f.critical.count, acknowledged: f.critical.acknowledged, p50: minutes(f.critical.delays.p50_s), p90: minutes(f.critical.delays.p90_s) })),
      h("div", { class: "monthly-charts" }, chart("critical")));
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  load();
  return () => {};
}
