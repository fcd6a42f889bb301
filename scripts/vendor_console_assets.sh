#!/usr/bin/env bash
# Vendor the console's chart library (uPlot, MIT) into the Python package: the console serves
# every asset itself (no CDN), so the built files are committed. Run again to upgrade:
#   bash scripts/vendor_console_assets.sh [version]
set -euo pipefail
version="${1:-1.6.32}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/gateway/console/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$work/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$work/package/LICENSE" "$dest/uPlot.LICENSE"
echo "uPlot $version vendored into $dest"
