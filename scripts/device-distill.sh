#!/usr/bin/env bash
# Runs ON the GPU machine (no JDK there), from the pack scripts/device-distill-pack.sh made:
#  1. the CUDA training ops' parity suite (CudaTrainOpsTest: every op's forward and backward against the
#     CPU's F32TrainOps, one whole training step on stories260K-hf and the fixture, four DistillStage
#     steps) unless --no-tests;
#  2. the distillation golden protocol (DeviceDistill): fixture-llama-14m pruned 2:4 by magnitude there,
#     400 steps of 8 x 512 on the GPU (GEMMs in ${MATH:-tf32}), perplexity of teacher / pruned / distilled
#     on 200 windows of heldout and wikitext2 (JAVA_PROPS=-Dshrink.distill.evalBefore=false: the distilled
#     student only).
# Logs go to $OUT when set (the device tool's folder).
#   bash .device/distill/device-distill.sh [--no-tests] [--tests-only]
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
PACK="$HERE"
[ -s "$PACK/jre.tgz" ] || { echo "device-distill: no $PACK/jre.tgz; run scripts/device-distill-pack.sh first" >&2; exit 2; }
LOGS="${OUT:-/tmp/shrink-device}"
mkdir -p "$LOGS"
JRE="${SHRINK_JRE_DIR:-/tmp/shrink-distill-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx48g -cp "$PACK/lib/*"
      -Dshrink.shared="$PACK/shared" -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}"
      ${JAVA_PROPS:-})
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
rc=0
if [ "${1:-}" != "--no-tests" ]; then
  echo "== CUDA training ops parity"
  "${JAVA[@]}" dev.shrink.kernels.cuda.DeviceSuite dev.shrink.distill.CudaTrainOpsTest 2>&1 \
    | grep -v -e SLF4J -e 'incubator modules' | tee "$LOGS/train-parity.log"
  rc=${PIPESTATUS[0]}
fi
if [ "${1:-}" != "--tests-only" ]; then
  echo "== distillation golden protocol on the GPU"
  WORK=/tmp/shrink-distill-work
  rm -rf "$WORK"
  "${JAVA[@]}" dev.shrink.distill.DeviceDistill "$PACK/shared/models/fixture-llama-14m" "$PACK/tokens" \
    "$WORK" "${MATH:-tf32}" "${STEPS:-400}" 2>&1 | grep -v -e SLF4J -e 'incubator modules' | tee "$LOGS/distill.log"
  r=${PIPESTATUS[0]}
  [ "$r" -ne 0 ] && rc=$r
fi
exit "$rc"
