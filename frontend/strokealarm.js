// The stroke alarm (docs/stroke.md): while a stroke alert waits for a radiologist, the
// browser of every radiologist and coordinator rings (sound + system notification) and
// shows a banner, again every RING_MS, until someone accepts it.
import { api } from "./api.js";
import { beep, h } from "./dom.js";
import { t } from "./i18n.js";

const POLL_MS = 4000;
export const RING_MS = 15000;
export const ALARMED_ROLES = ["radiologist", "coordinator"];

function patient(e) {
  return e.patient.name.replaceAll("^", " ");
}

export class StrokeAlarm {
  constructor(app) {
    this.app = app;
    this.waiting = new Map(); // exam id -> exam, the alerts nobody has accepted yet
    this.lastRing = new Map(); // exam id -> time of its last ring
    this.banner = h("div", { id: "stroke-alarm", class: "stroke-alarm", role: "alert", hidden: true, dataset: { rings: "0" } });
    this.onNotify = () => this.load();
    this.poll = null;
    this.ticker = null;
  }

  start() {
    document.body.prepend(this.banner);
    if ("Notification" in window && Notification.permission === "default") {
      // Asked once; a browser that wants a gesture asks again on the banner's click.
      Notification.requestPermission().catch(() => {});
    }
    this.app.notifications.addEventListener("notification", this.onNotify);
    this.poll = setInterval(() => this.load(), POLL_MS);
    this.ticker = setInterval(() => this.ring(), 1000);
    this.load();
  }

  stop() {
    clearInterval(this.poll);
    clearInterval(this.ticker);
    this.app.notifications.removeEventListener("notification", this.onNotify);
    this.banner.remove();
  }

  async load() {
    try {
      const { exams } = await api.exams({ status: "requested", limit: 100 });
      this.waiting = new Map(exams.filter((e) => e.stroke).map((e) => [e.id, e]));
    } catch {
      return; // the next poll tries again; the alarm keeps ringing for what it knows
    }
    for (const id of this.lastRing.keys()) if (!this.waiting.has(id)) this.lastRing.delete(id);
    this.render();
    this.ring();
  }

  render() {
    const list = [...this.waiting.values()];
    this.banner.hidden = list.length === 0;
    this.banner.replaceChildren(...list.map((e) => h("p", {},
      h("strong", {}, t("stroke.alarm")), ` — ${patient(e)} · ${e.modality} ${e.body_part} · ${e.establishment?.code || ""} `,
      h("a", { class: "btn btn-small btn-danger", href: `#/exam/${encodeURIComponent(e.id)}`,
        onclick: () => { if ("Notification" in window && Notification.permission === "default") Notification.requestPermission(); } },
      t("worklist.open")))));
  }

  ring() {
    const now = Date.now();
    for (const [id, e] of this.waiting) {
      if (now - (this.lastRing.get(id) || 0) < RING_MS) continue;
      this.lastRing.set(id, now);
      beep();
      this.banner.dataset.rings = String(Number(this.banner.dataset.rings) + 1);
      if ("Notification" in window && Notification.permission === "granted") {
        try {
          const n = new Notification(t("stroke.alarm"), {
            body: `${patient(e)} — ${e.modality} ${e.body_part} (${e.establishment?.code || ""})`,
            tag: `stroke-${id}`, renotify: true, requireInteraction: true,
          });
          n.onclick = () => { window.focus(); this.app.navigate(`#/exam/${encodeURIComponent(id)}`); };
          this.banner.dataset.notified = "true";
        } catch {
          // a browser that only notifies from a service worker: the banner and sound remain
        }
      }
    }
  }
}
