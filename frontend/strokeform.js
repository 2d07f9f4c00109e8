// The structured stroke report in the editor (docs/stroke.md "The report"): what the
// radiologist ticks is sent as the draft's `stroke` (server/reports/stroke.py); the
// server writes the findings and conclusion from it when they are sent blank.
import { h } from "./dom.js";
import { t } from "./i18n.js";

export const ASPECTS_REGIONS = ["C", "L", "IC", "I", "M1", "M2", "M3", "M4", "M5", "M6"];
const HAEMORRHAGE = ["intraparenchymal", "subarachnoid", "subdural", "extradural", "intraventricular"];
const OCCLUSION = ["ica", "ica_t", "m1", "m2", "m3", "aca", "pca", "vertebral", "basilar"];

function boxes(group, codes, label, checked, onChange) {
  return h("fieldset", { class: "stroke-group", id: `stroke-${group}` },
    h("legend", {}, t(`strokeform.${group}`)),
    ...codes.map((code) => {
      const id = `stroke-${group}-${code}`;
      const box = h("input", { type: "checkbox", id, value: code, dataset: { group } });
      box.checked = checked.includes(code);
      box.addEventListener("change", onChange);
      return h("span", { class: "stroke-box" }, box, h("label", { for: id }, label(code)));
    }));
}

function choice(id, values, current, onChange) {
  const sel = h("select", { id }, h("option", { value: "" }, "—"),
    ...values.map((v) => h("option", { value: v }, t(`strokeform.${id.replace("stroke-", "")}.${v}`))));
  sel.value = current || "";
  sel.addEventListener("change", onChange);
  return sel;
}

/** The form's element and a function reading its value (null when the form is off). */
export function strokeForm(initial, onChange) {
  const s = initial || {};
  const on = h("input", { type: "checkbox", id: "stroke-form-on" });
  on.checked = true;
  const score = h("output", { id: "stroke-aspects-score", "aria-live": "polite" });
  const changed = () => {
    score.textContent = `ASPECTS ${10 - picked("aspects").length}/10`;
    body.hidden = !on.checked;
    onChange();
  };
  const haem = boxes("haemorrhage", HAEMORRHAGE, (c) => t(`strokeform.haemorrhage.${c}`), s.haemorrhage || [], changed);
  const side = choice("stroke-side", ["left", "right"], s.side, changed);
  const aspects = boxes("aspects", ASPECTS_REGIONS, (c) => c, s.aspects_regions || [], changed);
  const hyper = h("input", { type: "checkbox", id: "stroke-hyperdense" });
  hyper.checked = Boolean(s.hyperdense_artery);
  hyper.addEventListener("change", changed);
  const occl = boxes("occlusion", OCCLUSION, (c) => t(`strokeform.occlusion.${c}`), s.occlusion || [], changed);
  const coll = choice("stroke-collaterals", ["good", "intermediate", "poor"], s.collaterals, changed);
  const volume = (id, v) => {
    const input = h("input", { type: "number", id, min: 0, max: 2000, step: "any", inputmode: "decimal" });
    input.value = v ?? "";
    input.addEventListener("change", changed);
    return input;
  };
  const core = volume("stroke-core", s.perfusion?.core_ml);
  const penumbra = volume("stroke-penumbra", s.perfusion?.penumbra_ml);
  const body = h("div", { class: "stroke-form-body" },
    haem,
    h("div", { class: "field" }, h("label", { for: "stroke-side" }, t("strokeform.side")), side),
    aspects, score,
    h("div", { class: "field field-check" }, hyper, h("label", { for: "stroke-hyperdense" }, t("strokeform.hyperdense"))),
    occl,
    h("div", { class: "field" }, h("label", { for: "stroke-collaterals" }, t("strokeform.collaterals")), coll),
    h("div", { class: "grid-2" },
      h("div", { class: "field" }, h("label", { for: "stroke-core" }, t("strokeform.core")), core),
      h("div", { class: "field" }, h("label", { for: "stroke-penumbra" }, t("strokeform.penumbra")), penumbra)));
  const el = h("fieldset", { class: "stroke-form", id: "stroke-form" },
    h("legend", {}, h("span", { class: "field-check" }, on, h("label", { for: "stroke-form-on" }, t("strokeform.title")))),
    body);
  function picked(group) {
    return [...el.querySelectorAll(`input[data-group="${group}"]:checked`)].map((b) => b.value);
  }
  score.textContent = `ASPECTS ${10 - (s.aspects_regions || []).length}/10`;
  function value() {
    if (!on.checked) return null;
    const out = {
      haemorrhage: picked("haemorrhage"),
      side: side.value || null,
      aspects_regions: picked("aspects"),
      hyperdense_artery: hyper.checked,
      occlusion: picked("occlusion"),
      collaterals: coll.value || null,
    };
    // Perfusion volumes only when both are given (both are required by the server).
    if (core.value !== "" && penumbra.value !== "") {
      out.perfusion = { core_ml: Number(core.value), penumbra_ml: Number(penumbra.value) };
    }
    return out;
  }
  return { el, value };
}
