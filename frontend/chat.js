// The room journal: chat messages (with sending/sent states) and the exam's events,
// in seq order. Messages typed offline wait in the RoomClient outbox and show "sending".
import { h, debounce } from "./dom.js";
import { t, formatTime } from "./i18n.js";

export class ChatPanel {
  constructor(room) {
    this.room = room;
    this.seen = new Set(); // client ids / event ids already shown
    this.log = h("ol", { class: "chat-log", id: "chat-log", "aria-live": "polite", "aria-label": t("chat.title") });
    this.typingEl = h("p", { class: "typing muted small", "aria-live": "polite" });
    this.input = h("textarea", { id: "chat-input", rows: 2, maxlength: 4000, placeholder: t("chat.placeholder") });
    this.sendBtn = h("button", { type: "submit", class: "btn btn-primary", id: "chat-send" }, t("chat.send"));
    this.offlineNote = h("p", { class: "small offline-note", hidden: true }, t("chat.offline_note"));
    const form = h("form", { class: "chat-form", "aria-label": t("chat.title") },
      h("label", { for: "chat-input", class: "sr-only" }, t("chat.label")), this.input, this.sendBtn);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        this.send();
      }
    });
    const typing = debounce(() => room.client.typing(), 300);
    this.input.addEventListener("input", () => typing());
    this.el = h("section", { class: "card chat-card", "aria-labelledby": "chat-title" },
      h("h2", { id: "chat-title" }, t("chat.title")), this.log, this.typingEl, this.offlineNote, form);
  }

  /** The messages typed before a reload and not yet acknowledged (the room's outbox). */
  restoreOutbox() {
    for (const item of this.room.client.outbox()) this.pending(item);
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    const item = this.room.client.sendChat(text);
    this.pending(item);
    this.input.value = "";
    this.input.focus();
  }

  pending(item) {
    if (this.seen.has(item.id)) return;
    this.seen.add(item.id);
    this.log.append(this.bubble({ id: item.id, text: item.text, at: item.at, mine: true, state: "sending" }));
    this.scroll();
  }

  bubble({ id, text, at, author, mine, state, missed }) {
    return h("li", { class: `msg${mine ? " mine" : ""}${missed ? " missed" : ""}`, dataset: { id, state: state || "sent" } },
      h("div", { class: "msg-meta small muted" }, mine ? t("chat.you") : author || "", " · ", formatTime(at),
        mine ? h("span", { class: "msg-state" }, ` · ${t(`chat.${state || "sent"}`)}`) : null),
      h("div", { class: "msg-text" }, text));
  }

  onAck({ id }) {
    const li = this.log.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (li) this.setSent(li);
  }

  setSent(li) {
    li.dataset.state = "sent";
    const st = li.querySelector(".msg-state");
    if (st) st.textContent = ` · ${t("chat.sent")}`;
  }

  onEvent(e, missed) {
    const mine = e.author && e.author.id === this.room.me.id;
    if (e.kind === "chat.message") {
      const existing = this.log.querySelector(`li[data-id="${CSS.escape(String(e.id))}"]`);
      if (existing) {
        this.setSent(existing);
        return;
      }
      this.seen.add(String(e.id));
      this.log.append(this.bubble({ id: String(e.id), text: e.body.text, at: e.at, author: e.author?.display_name, mine, missed }));
    } else {
      const who = e.author?.display_name ? ` — ${e.author.display_name}` : "";
      const extra = e.kind === "images.received" ? ` (${e.body?.modality || ""} ${t("images.count", { n: e.body?.count ?? "?" })}${e.body?.late ? ` — ${t("images.late")}` : ""})` : "";
      this.log.append(h("li", { class: `sys${missed ? " missed" : ""}`, dataset: { kind: e.kind } },
        h("span", { class: "small muted" }, formatTime(e.at)), ` ${t(`event.${e.kind}`)}${extra}${who}`));
    }
    this.scroll();
  }

  markMissedStart() {
    this.log.append(h("li", { class: "missed-divider", role: "separator" }, t("chat.missed_divider")));
  }

  onTyping(user) {
    if (!user || user.id === this.room.me.id) return;
    this.typingEl.textContent = t("chat.typing", { who: user.display_name });
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => {
      this.typingEl.textContent = "";
    }, 3000);
  }

  setOnline(online) {
    this.offlineNote.hidden = online;
  }

  scroll() {
    this.log.scrollTop = this.log.scrollHeight;
  }
}
