#!/usr/bin/env bash
# Runs ON the GPU machine, after scripts/device-pack.sh (the Java runtime and jars it packed):
# the GPU benchmarks of Shrink, then one table.
#   1. GPTQ of fixture-llama-14m on its reference calibration windows (128 x 512), float32 and TF32 GEMMs
#   2. GPTQ of a model with Llama-2-7B's shapes (32 layers, 4096/11008, 32 heads, vocabulary 32000;
#      random weights made in memory per block), 128 x 2048 random calibration tokens, TF32 GEMMs
#      (the reference takes ~309 s on an H200: shared/golden/ref-gptq-speed-llama2-7b-shapes-h200.json)
#   3. W4A16 GEMV bandwidth on the 7B linears' shapes against a device-to-device copy of the same bytes
#      (weights rotated over >= 1 GiB, back-to-back launches in a CUDA graph, event-timed; every kernel variant)
#   4. decode tok/s at batch 1 of a Llama-2-7B-shaped decoder, fp16 weights (cuBLAS) vs W4A16 (DecodeBench)
#   bash .device/cuda/device-bench.sh [--fp32-7b] [--layers N] [--no-7b]
# --fp32-7b adds the 7B job in float32 GEMMs too (slower); --layers N shortens the 7B job (timing check);
# --no-7b leaves it out.
# Logs go to $OUT (the device tool's folder) when set, else /tmp/shrink-device.
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
if [ -s "$HERE/jre.tgz" ]; then PACK="$HERE"; else PACK="$(pwd)/.device/cuda"; fi
[ -s "$PACK/jre.tgz" ] || { echo "device-bench: no $PACK/jre.tgz; run scripts/device-pack.sh first" >&2; exit 2; }
LOGS="${OUT:-/tmp/shrink-device}"
mkdir -p "$LOGS"
FP32_7B=0
LAYERS=32
SEVEN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --fp32-7b) FP32_7B=1 ;;
    --layers) LAYERS="$2"; shift ;;
    --no-7b) SEVEN=0 ;;
    *) echo "device-bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

JRE="${SHRINK_JRE_DIR:-/tmp/shrink-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx48g -cp "$PACK/lib/*"
      -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}")
LOG="$LOGS/bench.log"
: > "$LOG"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"

run() { # title, command...
  echo "== $1" | tee -a "$LOG"
  shift
  local t0=$SECONDS
  "$@" 2>&1 | grep -v -e "Using incubator modules" | tee -a "$LOG"
  echo "   (wall ${SECONDS}s since start, this step $((SECONDS - t0)) s)" | tee -a "$LOG"
}
FIX=(--model "$PACK/shared/models/fixture-llama-14m"
     --calib-tokens "$PACK/shared/golden/fixture-llama-14m.calib-c4-128x512.safetensors")
run "GPTQ fixture, fp32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${FIX[@]}" --math fp32
run "GPTQ fixture, tf32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${FIX[@]}" --math tf32
if [ "$SEVEN" = 1 ]; then
  run "GPTQ 7B shapes, tf32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench --layers "$LAYERS" --math tf32
fi
if [ "$SEVEN" = 1 ] && [ "$FP32_7B" = 1 ]; then
  run "GPTQ 7B shapes, fp32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench --layers "$LAYERS" --math fp32
fi
run "W4A16 GEMV" "${JAVA[@]}" dev.shrink.kernels.cuda.W4a16Bench
run "decode 7B shapes, fp16 vs W4A16" "${JAVA[@]}" dev.shrink.kernels.cuda.DecodeBench

echo
echo "| job | seconds | peak GPU GiB (loop's allocations / device in use) | details |"
echo "| --- | ---: | ---: | --- |"
grep '^RESULT|gptq' "$LOG" | while IFS='|' read -r _ job s alloc used what; do
  echo "| $job | $s | $alloc / $used | $what |"
done
echo
echo "| W4A16 GEMV N x K (w4 g128, 1 token) | kernel | GPU us per launch, median [min-max] | GB/s | copy GB/s (read+write) | of copy | 1 launch us | L2-hot us |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
grep '^RESULT|w4a16' "$LOG" | while IFS='|' read -r _ job kernel us lo hi g c ratio one hot; do
  echo "| ${job#w4a16 } | $kernel | $us [$lo-$hi] | $g | $c | $ratio% | $one | $hot |"
done
echo
echo "| W4A16 linear in the decoder (32 layers' weights) | N x K | default shape | us | GB/s | tuned shape | us | GB/s |"
echo "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |"
grep '^RESULT|linear' "$LOG" | while IFS='|' read -r _ _ role nk d dus dg b bus bg; do
  echo "| $role | $nk | $d | $dus | $dg | $b | $bus | $bg |"
done
echo
echo "| decode, Llama-2-7B shapes, batch 1 | launch | tok/s | ms/token | GB weights read/token | effective GB/s |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
grep '^RESULT|decode' "$LOG" | while IFS='|' read -r _ _ w how tps ms gb gbs; do
  echo "| $w | $how | $tps | $ms | $gb | $gbs |"
done
