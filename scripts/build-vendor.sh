#!/usr/bin/env bash
# Rebuild frontend/vendor/cornerstone/ from the npm registry (docs/frontend.md
# "The vendored Cornerstone3D"). Needs Node >= 20 and npm; `make run` does not.
# The versions are pinned in frontend/vendor-src/package.json and locked by its
# package-lock.json; `npm ci` installs exactly those, so anyone can rebuild and diff.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/frontend/vendor-src"
out="$here/frontend/vendor/cornerstone"
cd "$src"
[ "${SKIP_NPM_CI:-}" = 1 ] || npm ci --no-audit --no-fund
# One patch, checked: the annotation text of @cornerstonejs/tools sets its style with
# setAttribute("style"), which our CSP (style-src 'self', no inline style) refuses; the
# same declarations set through the CSSOM (element.style.cssText) are allowed.
text_box=node_modules/@cornerstonejs/tools/dist/esm/drawingSvg/drawTextBox.js
sed -i "s/textElement.setAttribute('style', combinedStyle);/textElement.style.cssText = combinedStyle;/" "$text_box"
grep -q "textElement.style.cssText = combinedStyle;" "$text_box" || { echo "drawTextBox.js patch did not apply" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/wasm"
# One ES module for the app, one for the decoding worker that the image loader starts
# with new Worker(new URL("./decodeImageFrameWorker.js", import.meta.url)); shared code
# goes into chunks beside them. Minified, no source maps. Node built-ins that some
# dependencies require (Emscripten's Node branch, vtk.js's XML writer) are replaced by
# the stand-ins of frontend/vendor-src/node-stubs/: none of them runs in the viewer.
node_modules/.bin/esbuild entry.js \
  node_modules/@cornerstonejs/dicom-image-loader/dist/esm/decodeImageFrameWorker.js \
  --bundle --format=esm --splitting --minify --legal-comments=none \
  --target=es2020 --outdir="$out" --entry-names='[name]' --chunk-names='chunk-[hash]' \
  --alias:url=./node-stubs/url.js --alias:events=./node-stubs/events.js \
  --alias:fs=./node-stubs/empty.js --alias:path=./node-stubs/empty.js --alias:module=./node-stubs/empty.js \
  --alias:crypto=./node-stubs/empty.js --alias:worker_threads=./node-stubs/empty.js \
  --alias:stream=./node-stubs/empty.js --alias:buffer=./node-stubs/empty.js --alias:util=./node-stubs/empty.js \
  --log-level=warning
mv "$out/entry.js" "$out/cornerstone.js"
# The decoders' WebAssembly (fetched only for compressed transfer syntaxes; the app
# points the loader at this folder with decodeConfig.wasmBasePath).
for f in codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm \
         codec-openjpeg/dist/openjpegwasm_decode.wasm \
         codec-charls/dist/charlswasm_decode.wasm \
         codec-openjph/dist/openjphjs.wasm; do
  if [ -f "node_modules/@cornerstonejs/$f" ]; then cp "node_modules/@cornerstonejs/$f" "$out/wasm/"; fi
done
versions=$(node -e 'const l=require("./package-lock.json").packages;for(const n of ["core","tools","dicom-image-loader"])console.log(`@cornerstonejs/${n} ${l["node_modules/@cornerstonejs/"+n].version}`)')
printf '%s\n' "Built by scripts/build-vendor.sh from frontend/vendor-src (package-lock.json)." "$versions" > "$out/VERSIONS.txt"
du -sh "$out"
