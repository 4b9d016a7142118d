#!/usr/bin/env bash
# Rebuild ehead_cli/serve/static/three.bundle.min.js, the page's only third-party JavaScript: the parts
# of three.js (npm package "three") that static/app.js imports, with its GLTFLoader, bundled and
# minified by esbuild (tree-shaken: only what the page uses). Needs Node.js and npm; runs offline
# once the two packages are in npm's cache. `make vendor-js` runs it.
set -euo pipefail
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.28.2
here="$(cd "$(dirname "$0")/.." && pwd)"
static="$here/ehead_cli/serve/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "three@$THREE_VERSION" "esbuild@$ESBUILD_VERSION"
cat > entry.js <<'JS'
export { AmbientLight, Color, DirectionalLight, LinearSRGBColorSpace, PerspectiveCamera, Scene,
  Vector3, WebGLRenderer } from "three";
export { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
JS
./node_modules/.bin/esbuild entry.js --bundle --minify --format=esm --target=es2020 --legal-comments=none \
  --banner:js="/* three.js r$(echo "$THREE_VERSION" | cut -d. -f2) (npm three@$THREE_VERSION), MIT licence: THREE-LICENSE.txt. Bundled by scripts/vendor-three.sh. */" \
  --outfile="$static/three.bundle.min.js"
cp node_modules/three/LICENSE "$static/THREE-LICENSE.txt"
ls -l "$static/three.bundle.min.js" "$static/THREE-LICENSE.txt"
