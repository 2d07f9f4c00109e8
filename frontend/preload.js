// A room opened directly (a link, a reload), before the app's own modules have loaded:
// the first image is asked at once (firstimage.js), and the viewer's library (4.3 MB)
// starts downloading without being evaluated; imaging.js's later import() takes this
// same module (docs/frontend.md "The first image before the viewer").
import { askFirstImage, preloadLibrary } from "./firstimage.js";

const room = /^#\/exam\/([^/?]+)/.exec(location.hash);
if (room) {
  askFirstImage(decodeURIComponent(room[1]));
  preloadLibrary();
}
