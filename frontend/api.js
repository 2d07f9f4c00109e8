// The HTTP API client (docs/api.md). The session lives in the HttpOnly cookie the server
// sets at login, so no token is ever kept in JavaScript.

export class ApiError extends Error {
  constructor(status, code, message, fields = []) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

const listeners = { unauthorized: new Set() };

export function onUnauthorized(fn) {
  listeners.unauthorized.add(fn);
}

// GETs asked ahead by preload.js when the page is opened on a room, before the app's
// modules have loaded (the session, the exam): the app's first request for the same
// path takes the answer already on its way, once, within AHEAD_MS; later ones ask anew.
const ahead = new Map();
const AHEAD_MS = 10000;

export function askAhead(path) {
  if (ahead.has(path)) return;
  const init = { method: "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
  const promise = fetch(path, init);
  promise.catch(() => {});
  ahead.set(path, { promise, at: performance.now() });
}

function takeAhead(method, path) {
  const early = method === "GET" ? ahead.get(path) : undefined;
  if (!early) return null;
  ahead.delete(path);
  return performance.now() - early.at < AHEAD_MS ? early.promise : null;
}

async function request(method, path, body, options = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await (takeAhead(method, path) || fetch(path, init));
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(resp.status, e.code || `http_${resp.status}`, e.message, e.fields);
    if (resp.status === 401 && !options.quiet401) {
      for (const fn of listeners.unauthorized) fn(err);
    }
    throw err;
  }
  return data;
}

export const api = {
  login: (username, password) =>
    request("POST", "/api/session", { username, password }, { quiet401: true }),
  logout: () => request("DELETE", "/api/session"),
  changePassword: (current, password) => request("POST", "/api/me/password", { current, new: password }),
  logoutEverywhere: () => request("DELETE", "/api/me/sessions"),
  me: () => request("GET", "/api/me", undefined, { quiet401: true }),
  exams: (params = {}) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      for (const one of [].concat(v)) if (one) q.append(k, one);
    }
    const qs = q.toString();
    return request("GET", `/api/exams${qs ? `?${qs}` : ""}`);
  },
  reviews: () => request("GET", "/api/reviews"),
  review: (id) => request("GET", `/api/reviews/${Number(id)}`),
  scoreReview: (id, body) => request("POST", `/api/reviews/${Number(id)}/score`, body),
  reviewFigures: (month, radiologist) =>
    request("GET", `/api/review-figures?${new URLSearchParams({ month, radiologist: String(radiologist) })}`),
  strokeStats: (month) => request("GET", `/api/stats/stroke?month=${encodeURIComponent(month)}`),
  exam: (id) => request("GET", `/api/exams/${encodeURIComponent(id)}`),
  priors: (id) => request("GET", `/api/exams/${encodeURIComponent(id)}/priors`),
  keyObjects: (id) => request("GET", `/api/exams/${encodeURIComponent(id)}/key-objects`),
  saveKeyObjects: (id, body) => request("POST", `/api/exams/${encodeURIComponent(id)}/key-objects`, body),
  events: (id, since = 0) => request("GET", `/api/exams/${encodeURIComponent(id)}/events?since=${since}`),
  createExam: (body) => request("POST", "/api/exams", body),
  patients: (q) => request("GET", `/api/patients?${new URLSearchParams({ q })}`),
  drafts: () => request("GET", "/api/exam-drafts"),
  completeDraft: (id, body) => request("POST", `/api/exam-drafts/${encodeURIComponent(id)}`, body),
  command: (id, name, body) =>
    request("POST", `/api/exams/${encodeURIComponent(id)}/${name}`, body ?? undefined),
  protocols: (modality, bodyPart) => {
    const q = new URLSearchParams();
    if (modality) q.set("modality", modality);
    if (bodyPart) q.set("body_part", bodyPart);
    return request("GET", `/api/protocols?${q}`);
  },
  report: (id) => request("GET", `/api/exams/${encodeURIComponent(id)}/report`),
  saveReport: (id, body) => request("PUT", `/api/exams/${encodeURIComponent(id)}/report`, body),
  signReport: (id, password, reviewRequested = false) =>
    request("POST", `/api/exams/${encodeURIComponent(id)}/report/sign`,
      { password, ...(reviewRequested ? { review_requested: true } : {}) }, { quiet401: true }),
  reportTemplates: (modality, bodyPart) =>
    request("GET", `/api/report-templates?${new URLSearchParams({ modality: modality || "", body_part: bodyPart || "" })}`),
};

/**
 * GET a DICOMweb JSON resource (QIDO, metadata); null when the service is absent.
 * `parseAfter`: a promise the JSON's parse waits for (the request does not).
 */
export async function dicomJson(path, { parseAfter = null } = {}) {
  const resp = await fetch(path, {
    credentials: "same-origin",
    headers: { Accept: "application/dicom+json" },
  });
  if (resp.status === 204) return [];
  if (!resp.ok) throw new ApiError(resp.status, `http_${resp.status}`, path);
  // The body is received meanwhile; only its parse on the main thread waits.
  if (parseAfter) await parseAfter;
  return resp.json();
}

/** A new client id for a chat message (the server de-duplicates on it). */
export function clientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
