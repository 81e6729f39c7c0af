#!/usr/bin/env bash
# Renders a compare report in headless Chromium (Debian's package: apt-get install -y chromium)
# and saves a screenshot, so that a person (or a test) can look at what report.html shows.
#   scripts/check-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]     (default 1280x2000)
# Exits 2 when chromium is missing or the page could not be rendered.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
html="$(readlink -f "$1")"
out="$(readlink -m "$2")"
size="${3:-1280x2000}"
[ -f "$html" ] || { echo "check-report: $1: no such file" >&2; exit 2; }
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "check-report: chromium not found (apt-get install -y chromium)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
# The flags keep Chromium off the network (this machine has none) and out of the user's profile.
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$out" "file://$html" >/dev/null 2>&1 || true
if [ ! -s "$out" ]; then
  echo "check-report: chromium wrote no screenshot of $html" >&2
  exit 2
fi
echo "$out"
