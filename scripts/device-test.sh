#!/usr/bin/env bash
# Runs ON the GPU machine (no JDK there): unpacks the Java runtime that scripts/device-pack.sh
# packed, runs the CUDA parity suite (every op against the CPU reference, the device-resident ops,
# the W4A16 GEMV, GPTQ and AWQ on the GPU against the CPU's, the pruning masks, the fixture's perplexity on CUDA against the
# CPU and PyTorch's figure, backend selection), then the CUDA op timings.
# Prints the results as tables; copies the logs to $OUT when that is set (the device tool's folder).
#   bash .device/cuda/device-test.sh [--no-bench]   (from the repository root, after device-pack.sh)
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
if [ -s "$HERE/jre.tgz" ]; then PACK="$HERE"; else PACK="$(pwd)/.device/cuda"; fi
[ -s "$PACK/jre.tgz" ] || { echo "device-test: no $PACK/jre.tgz; run scripts/device-pack.sh first" >&2; exit 2; }
LOGS="${OUT:-/tmp/shrink-device}"
mkdir -p "$LOGS"

JRE="${SHRINK_JRE_DIR:-/tmp/shrink-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx24g -cp "$PACK/lib/*")
# The cubin cache lives in the pack's folder, so a warm machine's second run loads instead of compiling.
PROPS=(-Dshrink.shared="$PACK/shared" -Dshrink.cuda.heldoutTokens="$PACK/heldout-8x512.safetensors"
       -Dshrink.gptq.cudaOut=/tmp/shrink-gptq-gpu -Dshrink.gptq.heldoutTokens="$PACK/heldout-64x512.safetensors"
       -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}")

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
echo "== parity suite"
"${JAVA[@]}" "${PROPS[@]}" dev.shrink.kernels.cuda.DeviceSuite \
    dev.shrink.kernels.cuda.CudaConformanceTest dev.shrink.kernels.cuda.DeviceOpsConformanceTest dev.shrink.kernels.cuda.DeviceOpsForwardTest \
    dev.shrink.kernels.cuda.W4a16GemvTest dev.shrink.kernels.cuda.DecodeKernelsTest dev.shrink.eval.CudaPerplexityParityTest \
    dev.shrink.gptq.CudaGptqParityTest dev.shrink.gptq.DeviceDecoderParityTest dev.shrink.awq.CudaAwqParityTest dev.shrink.awq.AwqDeviceDecoderParityTest dev.shrink.prune.CudaMasksParityTest \
    dev.shrink.kernels.cpu.ProvidersTest 2>&1 | tee "$LOGS/suite.log"
rc=${PIPESTATUS[0]}
# the fixture's GPTQ folders made on the GPU, one archive each (to evaluate on the whole heldout set elsewhere)
for d in /tmp/shrink-gptq-gpu/*/; do
  [ -d "$d" ] && tar czf "$LOGS/gptq-fixture-$(basename "$d").tgz" -C "$d" .
done

if [ "${1:-}" != "--no-bench" ]; then
  echo "== CUDA op timings"
  "${JAVA[@]}" "${PROPS[@]}" dev.shrink.kernels.cuda.CudaBench --cpu 2>&1 | tee "$LOGS/bench.log"
fi
exit "$rc"
