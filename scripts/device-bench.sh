#!/usr/bin/env bash
# Runs ON the GPU machine, after scripts/device-pack.sh (the Java runtime and jars it packed):
# the GPU benchmarks of Shrink, then one table.
#   1. GPTQ and AWQ of fixture-llama-14m on its reference calibration windows (128 x 512), float32 and TF32 GEMMs
#   2. `shrink synth --preset llama2-7b` (SyntheticModel: the CLI's jars do not travel): a folder with
#      Llama-2-7B's shapes (32 layers, 4096/11008, 32 heads, vocabulary 32000) and random bf16 weights,
#      12.6 GiB written to $SYNTH_DIR (default /tmp/shrink-synth-7b; kept, and reused when it is there)
#   3. GPTQ of that folder, 128 x 2048 random calibration tokens, TF32 GEMMs
#      (the reference takes ~309 s on an H200: shared/golden/ref-gptq-speed-llama2-7b-shapes-h200.json)
#   4. AWQ of that folder, the same tokens, TF32 GEMMs: the first 4 blocks by default (all 32 took 431.6 s
#      on an H100, 13.5 s per block: --no-fixture --layers 0 --no-decode --awq-layers 32 in a call of their own)
#   5. W4A16 GEMV bandwidth on the 7B linears' shapes against a device-to-device copy of the same bytes
#      (weights rotated over >= 1 GiB, back-to-back launches in a CUDA graph, event-timed; every kernel variant)
#   6. decode tok/s at batch 1 of a Llama-2-7B-shaped decoder, fp16 weights (cuBLAS) vs W4A16 (DecodeBench)
#   bash .device/cuda/device-bench.sh [--fp32-7b] [--layers N] [--awq-layers N] [--no-7b] [--no-awq-7b]
#                                     [--in-memory-7b] [--no-fixture] [--no-decode]
# --fp32-7b adds the 7B GPTQ in float32 GEMMs too (slower); --layers N / --awq-layers N run the first N blocks
# of the 7B GPTQ / AWQ jobs (default 32 / 4; --layers 0 leaves the 7B GPTQ out); --no-decode leaves out the
# decode benchmark (6), so that --no-fixture --layers 0 --awq-layers 32 is the whole 7B AWQ alone; --no-fixture leaves out the fixture jobs and the GEMV;
# --no-7b leaves the 7B jobs (and the synth) out, --no-awq-7b the 7B AWQ; --in-memory-7b makes the 7B GPTQ's
# weights in memory per block as before (no synth folder).
# Logs go to $OUT (the device tool's folder) when set, else /tmp/shrink-device.
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
if [ -s "$HERE/jre.tgz" ]; then PACK="$HERE"; else PACK="$(pwd)/.device/cuda"; fi
[ -s "$PACK/jre.tgz" ] || { echo "device-bench: no $PACK/jre.tgz; run scripts/device-pack.sh first" >&2; exit 2; }
LOGS="${OUT:-/tmp/shrink-device}"
mkdir -p "$LOGS"
FP32_7B=0
LAYERS=32
AWQ_LAYERS=4
SEVEN=1
AWQ_SEVEN=1
IN_MEMORY=0
FIXTURE=1
DECODE=1
SYNTH_DIR="${SYNTH_DIR:-/tmp/shrink-synth-7b}"
while [ $# -gt 0 ]; do
  case "$1" in
    --fp32-7b) FP32_7B=1 ;;
    --layers) LAYERS="$2"; shift ;;
    --awq-layers) AWQ_LAYERS="$2"; shift ;;
    --no-7b) SEVEN=0 ;;
    --no-awq-7b) AWQ_SEVEN=0 ;;
    --in-memory-7b) IN_MEMORY=1 ;;
    --no-fixture) FIXTURE=0 ;;
    --no-decode) DECODE=0 ;;
    *) echo "device-bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

JRE="${SHRINK_JRE_DIR:-/tmp/shrink-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx48g -cp "$PACK/lib/*"
      -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}" ${SHRINK_JAVA_OPTS:-})
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
if [ "$FIXTURE" = 1 ]; then
  run "GPTQ fixture, fp32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${FIX[@]}" --math fp32
  run "GPTQ fixture, tf32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${FIX[@]}" --math tf32
  run "AWQ fixture, fp32" "${JAVA[@]}" dev.shrink.awq.AwqDeviceBench "${FIX[@]}" --math fp32
  run "AWQ fixture, tf32" "${JAVA[@]}" dev.shrink.awq.AwqDeviceBench "${FIX[@]}" --math tf32
fi
if [ "$SEVEN" = 1 ] && [ "$IN_MEMORY" = 0 ]; then
  if [ -s "$SYNTH_DIR/config.json" ]; then
    echo "== synth: reusing $SYNTH_DIR" | tee -a "$LOG"
  else
    run "synth llama2-7b (bf16)" "${JAVA[@]}" dev.shrink.core.synth.SyntheticModel "$SYNTH_DIR" --preset llama2-7b --seed 0
  fi
  SEVEN_MODEL=(--model "$SYNTH_DIR")
else
  SEVEN_MODEL=()
fi
if [ "$SEVEN" = 1 ] && [ "$LAYERS" -gt 0 ]; then
  run "GPTQ 7B shapes, tf32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${SEVEN_MODEL[@]}" --layers "$LAYERS" --math tf32
fi
if [ "$SEVEN" = 1 ] && [ "$LAYERS" -gt 0 ] && [ "$FP32_7B" = 1 ]; then
  run "GPTQ 7B shapes, fp32" "${JAVA[@]}" dev.shrink.gptq.GptqDeviceBench "${SEVEN_MODEL[@]}" --layers "$LAYERS" --math fp32
fi
if [ "$SEVEN" = 1 ] && [ "$AWQ_SEVEN" = 1 ] && [ "$IN_MEMORY" = 0 ]; then
  run "AWQ 7B shapes, tf32" "${JAVA[@]}" dev.shrink.awq.AwqDeviceBench "${SEVEN_MODEL[@]}" --layers "$AWQ_LAYERS" --math tf32
fi
if [ "$FIXTURE" = 1 ]; then
  run "W4A16 GEMV" "${JAVA[@]}" dev.shrink.kernels.cuda.W4a16Bench
fi
if [ "$SEVEN" = 1 ] && [ "$DECODE" = 1 ]; then
  run "decode 7B shapes, fp16 vs W4A16" "${JAVA[@]}" dev.shrink.kernels.cuda.DecodeBench
fi

echo
echo "| job | seconds | peak GPU GiB (loop's allocations / device in use) | details |"
echo "| --- | ---: | ---: | --- |"
grep -e '^RESULT|gptq' -e '^RESULT|awq' "$LOG" | while IFS='|' read -r _ job s alloc used what; do
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
