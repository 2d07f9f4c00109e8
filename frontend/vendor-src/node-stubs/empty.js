// Stand-in for a Node built-in that some dependency requires at load time but that
// the viewer never calls in the browser (scripts/build-vendor.sh).
module.exports = {};
