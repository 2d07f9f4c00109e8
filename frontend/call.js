// Call controls of the exam room (docs/calls.md): call, mute, camera, hang up.
//
// Self-contained ES module. The media goes through the server's relay, never
// peer to peer: one RTCPeerConnection to the server, whose signalling travels on
// the room socket. The browser offers first (call.offer -> call.answer); after
// that the server sends call.offer whenever someone's tracks come or go, naming
// which mid carries whose media, and we answer (call.answer). The server is never
// "polite" (aiortc cannot roll back), so on a collision we roll back our own offer.
//
// Usage: createCallControls(container, roomClient, { lang: "fr" }) where
// roomClient is an EventTarget that emits one event per server frame type
// (detail = the frame) and has trySend(frame) -> boolean (frontend/roomclient.js).

const TEXT = {
  fr: {
    call: "Appeler",
    join: "Rejoindre l’appel",
    mute: "Couper le micro",
    unmute: "Réactiver le micro",
    cameraOn: "Activer la caméra",
    cameraOff: "Couper la caméra",
    hangup: "Raccrocher",
    inCall: (n) => (n === 1 ? "1 personne en appel" : `${n} personnes en appel`),
    noCall: "Pas d’appel en cours",
    muted: "micro coupé",
    denied: "Micro ou caméra refusés par le navigateur",
    full: "L’appel est complet",
    failed: "L’appel a échoué",
    lost: "L’appel a été coupé par le serveur : rappelez",
    recording: "● Cet appel est enregistré",
    noSound: "le son ne passe pas",
    speaking: "parle",
    grade: { good: "bonne connexion", fair: "connexion moyenne", poor: "mauvaise connexion", none: "pas de son" },
  },
  en: {
    call: "Call",
    join: "Join the call",
    mute: "Mute",
    unmute: "Unmute",
    cameraOn: "Turn camera on",
    cameraOff: "Turn camera off",
    hangup: "Hang up",
    inCall: (n) => (n === 1 ? "1 person in the call" : `${n} people in the call`),
    noCall: "No call in progress",
    muted: "muted",
    denied: "Microphone or camera refused by the browser",
    full: "The call is full",
    failed: "The call failed",
    lost: "The server cut the call: call again",
    recording: "● This call is recorded",
    noSound: "no sound is getting through",
    speaking: "speaking",
    grade: { good: "good connection", fair: "fair connection", poor: "poor connection", none: "no sound" },
  },
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

async function iceServers() {
  try {
    const resp = await fetch("/api/calls/config", { credentials: "same-origin" });
    if (resp.ok) return (await resp.json()).ice_servers || [];
  } catch {
    /* no configuration: loopback/LAN host candidates only */
  }
  return [];
}

export function createCallControls(container, roomClient, options = {}) {
  const t = TEXT[options.lang] || TEXT.fr;
  const state = {
    pc: null,
    stream: null,
    audio: true,
    video: false,
    senders: {}, // mid -> user whose media it carries, from the server's offers
    videoSender: null,
    members: [],
    recording: false,
  };

  const status = el("span", { class: "call-status", role: "status", "aria-live": "polite" });
  const callBtn = el("button", { type: "button", class: "call-start", onclick: () => start() });
  const muteBtn = el("button", { type: "button", class: "call-mute", onclick: () => toggleMute() });
  const camBtn = el("button", { type: "button", class: "call-camera", onclick: () => toggleCamera() });
  const hangBtn = el("button", { type: "button", class: "call-hangup", onclick: () => hangup() });
  const recording = el("span", { class: "call-recording", role: "note" });
  const media = el("div", { class: "call-media" });
  const quality = el("ul", { class: "call-quality", "aria-label": "qualité de l’appel" });
  const root = el(
    "div",
    { class: "call-controls" },
    status,
    recording,
    callBtn,
    muteBtn,
    camBtn,
    hangBtn,
    quality,
    media,
  );
  container.append(root);

  function render() {
    const inCall = state.pc !== null;
    const n = state.members.length;
    status.textContent = n ? t.inCall(n) : t.noCall;
    callBtn.textContent = n && !inCall ? t.join : t.call;
    callBtn.hidden = inCall;
    muteBtn.hidden = camBtn.hidden = hangBtn.hidden = !inCall;
    muteBtn.textContent = state.audio ? t.mute : t.unmute;
    muteBtn.setAttribute("aria-pressed", String(!state.audio));
    camBtn.textContent = state.video ? t.cameraOff : t.cameraOn;
    camBtn.setAttribute("aria-pressed", String(state.video));
    hangBtn.textContent = t.hangup;
    // Everyone is told before and during a recorded call (docs/calls.md "Recording").
    recording.textContent = state.recording ? t.recording : "";
    recording.hidden = !state.recording;
  }

  const send = (frame) => roomClient.trySend(frame);
  const sendMute = () => send({ type: "call.mute", audio: state.audio, video: state.video });

  async function offer() {
    const pc = state.pc;
    await pc.setLocalDescription(await pc.createOffer());
    send({ type: "call.offer", sdp: pc.localDescription.sdp });
  }

  async function start() {
    if (state.pc) return;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch {
      status.textContent = t.denied;
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: await iceServers(), bundlePolicy: "max-bundle" });
    state.pc = pc;
    for (const track of state.stream.getTracks()) pc.addTrack(track, state.stream);
    pc.onicecandidate = (ev) => {
      if (ev.candidate) send({ type: "call.ice", candidate: ev.candidate.toJSON() });
    };
    pc.ontrack = (ev) => attach(ev.transceiver.mid, ev.track);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") {
        status.textContent = t.failed;
        hangup();
      }
    };
    render();
    await offer();
  }

  function attach(mid, track) {
    const who = state.senders[mid];
    const tag = track.kind === "video" ? "video" : "audio";
    const node = el(tag, { autoplay: "", playsinline: "", "data-mid": mid });
    if (who) node.title = who.display_name;
    node.srcObject = new MediaStream([track]);
    track.onended = () => node.remove();
    media.querySelector(`[data-mid="${mid}"]`)?.remove();
    media.append(node);
  }

  async function onOffer(ev) {
    const pc = state.pc;
    if (!pc) return;
    for (const s of ev.detail.tracks || []) state.senders[s.mid] = s.user;
    // A collision with our own offer: we are the polite side, roll ours back.
    await pc.setRemoteDescription({ type: "offer", sdp: ev.detail.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    send({ type: "call.answer", sdp: pc.localDescription.sdp });
    for (const node of media.querySelectorAll("[data-mid]")) {
      if (!state.senders[node.dataset.mid] || !ev.detail.tracks.some((s) => s.mid === node.dataset.mid))
        node.remove();
    }
  }

  async function onAnswer(ev) {
    if (state.pc && state.pc.signalingState === "have-local-offer")
      await state.pc.setRemoteDescription({ type: "answer", sdp: ev.detail.sdp });
  }

  function onState(ev) {
    state.members = ev.detail.participants || [];
    state.recording = Boolean(ev.detail.recording);
    render();
  }

  function onError(ev) {
    const code = ev.detail.code;
    if (code === "call_full") status.textContent = t.full;
    else if (code === "call_glare" && state.pc) setTimeout(() => offer(), 200);
    else if (code === "call_failed" || code === "not_in_call") status.textContent = t.failed;
    if (code === "call_full" || code === "call_failed" || code === "call_lost") teardown();
    // The process holding the call stopped (docs/calls.md): say so after the reset.
    if (code === "call_lost") status.textContent = t.lost;
  }

  // call.quality (docs/calls.md "Quality indicators"): one row per participant with a
  // connection bar (loss, jitter, round trip), a "speaking" ring, and a plain message
  // when their voice has not reached the server for a few seconds.
  const BAR = { good: 3, fair: 2, poor: 1, none: 0 };
  function onQuality(ev) {
    const rows = [];
    for (const p of ev.detail.participants || []) {
      const silent = !p.media && !p.muted;
      const ring = el("span", { class: "call-speaking", "aria-hidden": "true" });
      const bar = el("meter", {
        class: "call-bar",
        min: "0",
        max: "3",
        low: "1.5",
        high: "2.5",
        optimum: "3",
        value: String(BAR[p.grade] ?? 0),
        title: detail(p),
      });
      const name = el("span", { class: "call-name" }, p.user.display_name);
      const row = el("li", { "data-user": String(p.user.id), "data-grade": p.grade }, ring, name, bar);
      row.classList.toggle("speaking", Boolean(p.speaking));
      if (p.speaking) row.append(el("span", { class: "call-speaking-label" }, t.speaking));
      if (silent) row.append(el("span", { class: "call-no-sound", role: "alert" }, t.noSound));
      else row.append(el("span", { class: "call-grade" }, t.grade[p.grade] || ""));
      rows.push(row);
    }
    quality.replaceChildren(...rows);
  }

  function detail(p) {
    const parts = [];
    if (p.loss != null) parts.push(`perte ${(100 * p.loss).toFixed(1)} %`);
    if (p.jitter_ms != null) parts.push(`gigue ${Math.round(p.jitter_ms)} ms`);
    if (p.rtt_ms != null) parts.push(`aller-retour ${Math.round(p.rtt_ms)} ms`);
    return parts.join(", ");
  }

  function toggleMute() {
    state.audio = !state.audio;
    for (const track of state.stream?.getAudioTracks() || []) track.enabled = state.audio;
    sendMute();
    render();
  }

  async function toggleCamera() {
    if (!state.pc) return;
    const sender = state.pc.getSenders().find((s) => s.track?.kind === "video" || s === state.videoSender);
    if (!state.video) {
      let cam;
      try {
        cam = await navigator.mediaDevices.getUserMedia({ video: true });
      } catch {
        status.textContent = t.denied;
        return;
      }
      const track = cam.getVideoTracks()[0];
      state.stream.addTrack(track);
      state.video = true;
      if (sender) {
        await sender.replaceTrack(track); // the m-line exists: no renegotiation
      } else {
        state.videoSender = state.pc.addTrack(track, state.stream);
        await offer(); // a new m-line: renegotiate from our side
      }
    } else {
      for (const track of state.stream.getVideoTracks()) {
        track.stop();
        state.stream.removeTrack(track);
      }
      await sender?.replaceTrack(null);
      state.video = false;
    }
    sendMute();
    render();
  }

  function teardown() {
    state.pc?.close();
    state.pc = null;
    for (const track of state.stream?.getTracks() || []) track.stop();
    state.stream = null;
    state.audio = true;
    state.video = false;
    state.senders = {};
    state.videoSender = null;
    media.replaceChildren();
    quality.replaceChildren();
    render();
  }

  function hangup() {
    if (state.pc) send({ type: "call.hangup" });
    teardown();
  }

  const handlers = {
    "call.offer": onOffer,
    "call.answer": onAnswer,
    "call.state": onState,
    "call.quality": onQuality,
    error: onError,
  };
  for (const [type, fn] of Object.entries(handlers)) roomClient.addEventListener(type, fn);
  // A dropped room socket means the server already hung us up.
  const onRoomState = (ev) => {
    if (ev.detail !== "online") teardown();
  };
  roomClient.addEventListener("state", onRoomState);
  render();
  // Who is already in the call (and whether it is recorded) before anyone speaks.
  const examId = options.examId || roomClient.examId;
  if (examId)
    fetch(`/api/exams/${encodeURIComponent(examId)}/call`, { credentials: "same-origin" })
      .then((resp) => (resp.ok ? resp.json() : null))
      .then((frame) => frame && onState({ detail: frame }))
      .catch(() => {});

  return {
    element: root,
    start,
    hangup,
    toggleMute,
    toggleCamera,
    destroy() {
      hangup();
      for (const [type, fn] of Object.entries(handlers)) roomClient.removeEventListener(type, fn);
      roomClient.removeEventListener("state", onRoomState);
      root.remove();
    },
  };
}
