// A room opened directly (a link, a reload): the viewer's library (4.3 MB) starts
// downloading and compiling now, before the app's own modules have loaded; imaging.js's
// later import() gets this same module (docs/benchmarks.md "Viewer").
if (location.hash.startsWith("#/exam/")) import("./vendor/cornerstone/cornerstone.js").catch(() => {});
