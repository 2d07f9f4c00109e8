// The protocol panel: the radiologist picks from the catalogue, edits and sends; the
// manipulator sees it arrive (sound + visible alert) and acknowledges with one click.
import { api } from "./api.js";
import { h, clear, beep } from "./dom.js";
import { t, formatTime } from "./i18n.js";
import { can, runCommand } from "./actions.js";

export class ProtocolPanel {
  constructor(room) {
    this.room = room;
    this.catalogue = null;
    this.body = h("div", { class: "protocol-body" });
    this.el = h("section", { class: "card protocol-card", id: "protocol-panel", "aria-labelledby": "protocol-title" },
      h("h2", { id: "protocol-title" }, t("protocol.title")), this.body);
    this.draft = null; // the radiologist's text being edited survives re-renders
  }

  async loadCatalogue() {
    if (this.catalogue) return;
    try {
      this.catalogue = (await api.protocols()).protocols;
    } catch {
      this.catalogue = [];
    }
    this.render();
  }

  render() {
    const exam = this.room.exam;
    if (!exam) return;
    const toAck = can(this.room, "protocol_ack");
    this.el.classList.toggle("alerting", toAck);
    if (can(this.room, "protocol")) {
      this.renderEditor(exam);
      return;
    }
    const p = exam.protocol;
    const times = exam.times || {};
    clear(this.body,
      p ? h("pre", { class: "protocol-text", id: "protocol-text" }, p.text) : h("p", { class: "muted" }, t("protocol.none")),
      p && times.protocol_acknowledged_at
        ? h("p", { class: "ok-line small", id: "protocol-acked" }, `✓ ${t("protocol.acked_at", { time: formatTime(times.protocol_acknowledged_at) })}`)
        : null,
      toAck
        ? h("div", { class: "protocol-alert", role: "alert" },
          h("strong", {}, t("protocol.arrived")),
          h("button", { type: "button", class: "btn btn-primary btn-big", id: "protocol-ack", onclick: (ev) => this.ack(ev.target) }, t("protocol.ack")))
        : null);
  }

  renderEditor(exam) {
    if (this.catalogue === null) {
      clear(this.body, h("p", { class: "muted" }, t("app.loading")));
      this.loadCatalogue();
      return;
    }
    const items = [...this.catalogue].sort((a, b) => (b.modality === exam.modality) - (a.modality === exam.modality)
      || (b.body_part === exam.body_part) - (a.body_part === exam.body_part));
    const pick = h("select", { id: "protocol-pick" }, h("option", { value: "" }, t("protocol.free")),
      ...items.map((p) => h("option", { value: p.id }, `${p.modality} · ${p.title}`)));
    const text = h("textarea", { id: "protocol-textarea", rows: 7, maxlength: 20000 });
    const err = h("p", { class: "field-error", role: "alert" });
    if (this.draft) {
      pick.value = this.draft.id || "";
      text.value = this.draft.text;
    } else if (exam.protocol) {
      pick.value = exam.protocol.id || "";
      text.value = exam.protocol.text;
    } else if (exam.stroke?.protocol_id) {
      // A stroke alert preselects the stroke protocol its onset calls for (docs/stroke.md).
      const p = this.catalogue.find((x) => x.id === exam.stroke.protocol_id);
      if (p) {
        pick.value = p.id;
        text.value = p.text;
      }
    }
    pick.addEventListener("change", () => {
      const p = this.catalogue.find((x) => x.id === pick.value);
      if (p) text.value = p.text;
      this.draft = { id: pick.value, text: text.value };
    });
    text.addEventListener("input", () => {
      this.draft = { id: pick.value, text: text.value };
    });
    const send = h("button", { type: "submit", class: "btn btn-primary", id: "protocol-send" },
      exam.status === "protocoled" ? t("protocol.resend") : t("protocol.send"));
    const form = h("form", { class: "protocol-form" },
      h("label", { for: "protocol-pick" }, t("protocol.catalogue")), pick,
      h("label", { for: "protocol-textarea" }, t("protocol.text")), text, err, send);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) {
        err.textContent = t("form.err.required");
        text.focus();
        return;
      }
      send.disabled = true;
      const body = { text: text.value.trim() };
      if (pick.value) body.protocol_id = pick.value;
      if (await runCommand(this.room, "protocol", body, "protocol.sent")) this.draft = null;
      send.disabled = false;
    });
    clear(this.body, exam.status === "protocoled" && exam.times?.protocol_acknowledged_at === null
      ? h("p", { class: "muted small" }, t("protocol.waiting_ack")) : null, form);
  }

  async ack(btn) {
    btn.disabled = true;
    await runCommand(this.room, "protocol/ack", undefined, "protocol.acked");
  }

  onEvent(e, missed) {
    if (e.kind !== "protocol.proposed" || this.room.me.role !== "manipulator") return;
    if (this.room.exam && e.seq <= this.room.exam.last_seq && !missed) return; // history replay
    beep();
    this.room.banner("protocol", t("protocol.arrived_banner"), "warn");
    this.room.refresh();
  }
}
