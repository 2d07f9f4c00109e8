// A room opened directly (a link, a reload), before the app's own modules have loaded:
// the first image is asked at once (firstimage.js); once it is decoded (or known not to
// come), the viewer's library (4.3 MB) starts downloading without being evaluated;
// imaging.js's later import() takes this same module (docs/frontend.md "The first
// image before the viewer").
// The session and the exam are asked too (api.js takes their answers), so that the room
// is drawn as soon as the app's modules are loaded, with no round trip after them.
import { askFirstImage, preloadLibrary } from "./firstimage.js";
import { askAhead } from "./api.js";

const room = /^#\/exam\/([^/?]+)/.exec(location.hash);
if (room) {
  const examId = decodeURIComponent(room[1]);
  askAhead("/api/me");
  askAhead(`/api/exams/${encodeURIComponent(examId)}`);
  askFirstImage(examId).finally(preloadLibrary);
}
