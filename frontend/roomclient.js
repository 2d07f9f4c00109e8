// The exam room connection (docs/api.md "Exam room"): reconnects with `since`, keeps the
// messages typed while offline in an outbox persisted in sessionStorage, and sends
// each with its client id until acknowledged, so a message is stored exactly once
// even if the page reloads or the socket drops mid-send (the server de-duplicates ids).
// Closed by the server when the session ends (CLOSE.SESSION_ENDED) or the exam went to
// another radiologist (CLOSE.FORBIDDEN, after an `access.lost` frame naming who took
// it): no retry. The codes come from the server (`/constants.js`), never retyped.
// A welcome with `reset` (the server's log is behind our `since`: a database restored
// from a backup) makes it forget its position: the server replays from seq 1.
import { clientId } from "./api.js";
import { CLOSE } from "./constants.js";

const PING_MS = 15000;
const PONG_TIMEOUT_MS = 8000;
const MAX_BACKOFF_MS = 10000;

export class RoomClient extends EventTarget {
  constructor(examId) {
    super();
    this.examId = examId;
    this.lastSeq = 0;
    this.ws = null;
    this.state = "connecting";
    this.closed = false;
    this.attempt = 0;
    this.timers = { retry: null, ping: null, pong: null };
    this.outboxKey = `ti.outbox.${examId}`;
    this.wasDisconnected = false;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.drop("offline");
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.timers.retry);
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const url = `${proto}://${location.host}/ws/exams/${encodeURIComponent(this.examId)}?since=${this.lastSeq}`;
    this.setState(this.wasDisconnected ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (msg) => this.handle(msg.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopPing();
      if (this.closed) return;
      if ([CLOSE.SESSION_ENDED, CLOSE.FORBIDDEN, CLOSE.NO_SUCH_EXAM].includes(ev.code)) {
        this.setState("refused");
        this.closeReason = ev.reason || "";
        this.emit("refused", ev.code);
        return;
      }
      this.wasDisconnected = true;
      this.setState("offline");
      this.scheduleRetry();
    };
  }

  handle(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome": {
        this.attempt = 0;
        if (frame.reset) {
          // What we hold is from a log the server no longer has: start again from 0.
          this.lastSeq = 0;
          this.wasDisconnected = false;
          this.emit("reset", frame);
          if (this.closed) return; // the view was mounted again with a new client
        }
        const resumed = this.wasDisconnected;
        this.setState("online");
        this.startPing();
        this.emit("welcome", { ...frame, resumed, since: this.lastSeq });
        this.flushOutbox();
        break;
      }
      case "event":
        if (frame.event.seq <= this.lastSeq) return; // already seen: never shown twice
        this.lastSeq = frame.event.seq;
        if (frame.event.kind === "chat.message") this.removeFromOutbox(frame.event.id);
        this.emit("event", frame.event);
        break;
      case "ack":
        this.removeFromOutbox(frame.id);
        this.emit("ack", frame);
        break;
      case "pong":
        clearTimeout(this.timers.pong);
        break;
      default:
        this.emit(frame.type, frame);
    }
  }

  // -- chat outbox ---------------------------------------------------------

  outbox() {
    try {
      return JSON.parse(sessionStorage.getItem(this.outboxKey) || "[]");
    } catch {
      return [];
    }
  }

  saveOutbox(items) {
    sessionStorage.setItem(this.outboxKey, JSON.stringify(items));
  }

  removeFromOutbox(id) {
    const items = this.outbox();
    const rest = items.filter((m) => m.id !== id);
    if (rest.length !== items.length) this.saveOutbox(rest);
  }

  /** Queue a chat message; returns its client id. Sent now if online, else on reconnect. */
  sendChat(text) {
    const item = { id: clientId(), text, at: new Date().toISOString() };
    this.saveOutbox([...this.outbox(), item]);
    this.trySend({ type: "chat", id: item.id, text: item.text });
    return item;
  }

  flushOutbox() {
    for (const m of this.outbox()) this.trySend({ type: "chat", id: m.id, text: m.text });
  }

  typing() {
    this.trySend({ type: "typing" });
  }

  trySend(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "online") {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // -- liveness ------------------------------------------------------------

  startPing() {
    this.stopPing();
    this.timers.ping = setInterval(() => {
      if (!this.trySend({ type: "ping" })) return;
      clearTimeout(this.timers.pong);
      this.timers.pong = setTimeout(() => this.drop("timeout"), PONG_TIMEOUT_MS);
    }, PING_MS);
  }

  stopPing() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.pong);
  }

  /** Treat the socket as lost now (offline event, missed pong) rather than wait for TCP. */
  drop(reason) {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    this.stopPing();
    try {
      ws.close(4000, reason);
    } catch {
      // already closing
    }
    this.wasDisconnected = true;
    this.setState("offline");
    if (navigator.onLine) this.scheduleRetry();
  }

  scheduleRetry() {
    clearTimeout(this.timers.retry);
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    this.stopPing();
    clearTimeout(this.timers.retry);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    if (this.ws) this.ws.close(1000, "leaving");
    this.ws = null;
  }
}
