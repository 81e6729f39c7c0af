#!/usr/bin/env bash
# Runs ON the GPU machine, after scripts/device-pack.sh: decode tok/s through eval's device path (what
# `shrink eval --speed --device cuda` measures: DeviceModel + Speed.measure) on a Llama-2-7B-shaped folder
# with random fp16 weights (`shrink synth`'s SyntheticModel), then on its GPTQ w4 g128 RTN quantization
# (GptqStage on the CPU of that machine), via dev.shrink.gptq.DeviceSpeedBench.
#   bash .device/cuda/device-evalspeed.sh [--layers N]   (default 32: the whole 7B shape, 12.6 GiB written to /tmp)
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
if [ -s "$HERE/jre.tgz" ]; then PACK="$HERE"; else PACK="$(pwd)/.device/cuda"; fi
[ -s "$PACK/jre.tgz" ] || { echo "device-evalspeed: no $PACK/jre.tgz; run scripts/device-pack.sh first" >&2; exit 2; }
LAYERS=32
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) LAYERS="$2"; shift ;;
    *) echo "device-evalspeed: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
LOGS="${OUT:-/tmp/shrink-device}"; mkdir -p "$LOGS"
JRE="${SHRINK_JRE_DIR:-/tmp/shrink-jre}"
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$PACK/jre.tgz" -C "$JRE"; } || exit 2
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx96g -cp "$PACK/lib/*"
      -Dshrink.cubin.cache="${SHRINK_CUBIN_CACHE:-/tmp/shrink-cubin}")
DIR=/tmp/shrink-evalspeed-7b-$LAYERS
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
s=$SECONDS
"${JAVA[@]}" dev.shrink.core.synth.SyntheticModel "$DIR" --hidden 4096 --intermediate 11008 --layers "$LAYERS" \
  --heads 32 --vocab 32000 --dtype fp16 --seed 0 --overwrite 2>&1 | grep -v incubator | tail -2
echo "synth ($LAYERS layers, fp16) in $((SECONDS - s)) s"
"${JAVA[@]}" dev.shrink.gptq.DeviceSpeedBench "$DIR" --rtn "$DIR-rtn" --prompt 32 --decode 128 --repeats 3 2>&1 \
  | grep -v -e SLF4J -e incubator | tee "$LOGS/evalspeed.log"
rc=${PIPESTATUS[0]}
echo "evalspeed rc=$rc at $((SECONDS - s)) s"
exit $rc
