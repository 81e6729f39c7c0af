#!/usr/bin/env bash
# Pack first: scripts/device-pack.sh .device/evalgpu (then copy this file there as run.sh); run with carry [".device/evalgpu"].
# evalgpu: DeviceDecoder parity on the fixture + fixture speed, DecodeBench smoke (refactor), 7B-shaped 4-layer fp16 vs RTN W4A16.
set -uo pipefail
P="$(pwd)/.device/evalgpu"
LOGS="${OUT:-/tmp/evalgpu}"; mkdir -p "$LOGS"
JRE=/tmp/shrink-jre
[ -x "$JRE/jre/bin/java" ] || { mkdir -p "$JRE" && tar xzf "$P/jre.tgz" -C "$JRE"; }
JAVA=("$JRE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
      --sun-misc-unsafe-memory-access=allow -Xmx64g -cp "$P/lib/*" -Dshrink.shared="$P/shared" -Dshrink.cubin.cache=/tmp/shrink-cubin)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
s=$SECONDS
echo "== parity (DeviceDecoderParityTest, DecodeKernelsTest)"
timeout 90 "${JAVA[@]}" dev.shrink.kernels.cuda.DeviceSuite dev.shrink.gptq.DeviceDecoderParityTest \
  dev.shrink.kernels.cuda.DecodeKernelsTest 2>&1 | grep -v -e SLF4J -e incubator | tee "$LOGS/parity.log"
echo "parity rc=${PIPESTATUS[0]} at $((SECONDS-s)) s"
echo "== DecodeBench smoke (2 layers, 32 tokens)"
timeout 25 "${JAVA[@]}" dev.shrink.kernels.cuda.DecodeBench --layers 2 --tokens 32 2>&1 | grep -v -e incubator -e "RESULT|linear" | tee "$LOGS/decodebench.log"
echo "decodebench rc=${PIPESTATUS[0]} at $((SECONDS-s)) s"
echo "== 7B-shaped, 4 layers, fp16 synth"
timeout 30 "${JAVA[@]}" dev.shrink.core.synth.SyntheticModel /tmp/s7b4 --hidden 4096 --intermediate 11008 --layers 4 \
  --heads 32 --vocab 32000 --dtype fp16 --seed 0 --overwrite 2>&1 | grep -v incubator | tail -3
echo "synth at $((SECONDS-s)) s"
timeout 75 "${JAVA[@]}" dev.shrink.gptq.DeviceSpeedBench /tmp/s7b4 --rtn /tmp/s7b4-rtn --prompt 32 --decode 128 --repeats 3 \
  2>&1 | grep -v -e SLF4J -e incubator | tee "$LOGS/bench7b.log"
echo "bench rc=${PIPESTATUS[0]} at $((SECONDS-s)) s"
grep -h "RESULT|evalspeed\|RESULT|decode" "$LOGS"/*.log
