// The personal channel (`WS /ws/notifications`): assignments and escalations pushed
// the moment they happen. It retries quietly with a growing delay: a server without
// the channel (or a flaky network) must never bother the user, the worklist also polls.
import { CLOSE } from "./constants.js";

const MAX_DELAY_MS = 60000;

export class Notifications extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.stopped = false;
    this.delay = 1000;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    if (this.stopped || this.ws) return;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let ws;
    try {
      ws = new WebSocket(`${proto}://${location.host}/ws/notifications`);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 1000;
    };
    ws.onmessage = (msg) => {
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (frame.type === "notification") {
        this.dispatchEvent(new CustomEvent("notification", { detail: frame }));
      }
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      if (ev.code === CLOSE.SESSION_ENDED) {
        // The session ended (logout elsewhere, expiry, deactivation): no retry.
        this.stopped = true;
        this.dispatchEvent(new CustomEvent("ended"));
        return;
      }
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), this.delay);
    this.delay = Math.min(MAX_DELAY_MS, this.delay * 2);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}
