#!/usr/bin/env bash
# Runs ON the GPU machine, from a pack made by scripts/device-pack.sh (the fixture may be left out):
# programmatic dependent launch (PDL) of the W4A16 GEMV, in one call:
#   1. parity: LaunchConfigLayoutTest, W4a16GemvTest (every kernel, and the PDL launches: exact against the
#      reference, chains where each kernel reads what the one before wrote, eager and in a graph), DecodeKernelsTest
#   2. W4a16Bench --pdl: the default tiled shape of the 7B shapes, plain vs PDL, graph replays interleaved
#   3. DecodeBench --w4-only --no-tune --pdl: 7B-shaped W4A16 decode, plain vs PDL, logits compared bit for bit
#   bash .device/pdl/device-pdl.sh [--layers 32] [--tokens 64]
# Logs go to $OUT (the device tool's folder) when set, else /tmp/shrink-device.
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
PACK="$HERE"
[ -s "$PACK/jre.tgz" ] || { echo "device-pdl: no $PACK/jre.tgz; run scripts/device-pack.sh first" >&2; exit 2; }
LAYERS=32
TOKENS=64
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) LAYERS="$2"; shift ;;
    --tokens) TOKENS="$2"; shift ;;
    *) echo "device-pdl: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
LOGS="${OUT:-/tmp/shrink-device}"
mkdir -p "$LOGS"
JRE="${SHRINK_JRE_DIR:-/tmp/shrink-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx24g -cp "$PACK/lib/*"
      -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}")
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
t0=$SECONDS
echo "== parity"
timeout 60 "${JAVA[@]}" dev.shrink.kernels.cuda.DeviceSuite dev.shrink.kernels.cuda.LaunchConfigLayoutTest \
  dev.shrink.kernels.cuda.W4a16GemvTest dev.shrink.kernels.cuda.DecodeKernelsTest 2>&1 | grep -v "Using incubator" \
  | tee "$LOGS/suite.log"
rc=${PIPESTATUS[0]}
echo "   (parity: rc $rc, $((SECONDS - t0)) s)"
t1=$SECONDS
echo "== W4a16Bench --pdl"
timeout 60 "${JAVA[@]}" dev.shrink.kernels.cuda.W4a16Bench --pdl 2>&1 | grep -v "Using incubator" | tee "$LOGS/w4a16.log"
echo "   (W4a16Bench: rc ${PIPESTATUS[0]}, $((SECONDS - t1)) s)"
t2=$SECONDS
echo "== DecodeBench --layers $LAYERS --tokens $TOKENS --w4-only --no-tune --pdl"
timeout 45 "${JAVA[@]}" dev.shrink.kernels.cuda.DecodeBench --layers "$LAYERS" --tokens "$TOKENS" --w4-only --no-tune --pdl \
  2>&1 | grep -v "Using incubator" | tee "$LOGS/decode.log"
echo "   (DecodeBench: rc ${PIPESTATUS[0]}, $((SECONDS - t2)) s; total $((SECONDS - t0)) s)"
exit "$rc"
