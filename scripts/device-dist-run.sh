#!/usr/bin/env bash
# Runs ON the GPU machine (no JDK there), from the repository root, after scripts/device-dist-pack.sh:
#   run(command="bash .device/dist/device-dist-run.sh", carry=[".device/dist"])      (one device call, ~6 min)
# The release tarball alone: --version (backends), gptq and eval --device cuda of a synth folder, estimate
# beside the measured speeds; then the CUDA parity suite on the tarball's runtime and jars plus the test jars;
# then the README's main job (shrink compare examples/compare.yaml). Logs and reports go to $OUT.
# Sections: bash device-dist-run.sh [all|fixtures|suite]  (default all; SUITE="class ..." overrides the suite's classes)
set -uo pipefail
P=$(cd "$(dirname "$0")" && pwd); ROOT=$(pwd); T0=$(date +%s)
WHAT="${1:-all}"
mkdir -p /tmp/inst /tmp/shared/models /tmp/shared/datasets
tar xJf "$P/shrink.tar.xz" -C /tmp/inst
tar xJf "$P/datasets.tar.xz" -C /tmp/shared/datasets
H=$(echo /tmp/inst/shrink-*); S="$H/bin/shrink"
export SHRINK_SHARED=/tmp/shared
t() { local s=$(date +%s%N); "$@"; local rc=$?; echo "   [rc $rc, $(( ($(date +%s%N) - s) / 1000000 )) ms]" >&2; return $rc; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "== architecture fixtures made by transformers (CPU, float32): come back in \$OUT/arch.tar.gz"
timeout 120 python3 "$P/make_arch_fixtures.py" /tmp/arch 2>&1 | grep -v -i "warn\|Writing model shards" | tail -12
tar czf "$OUT/arch.tar.gz" -C /tmp arch
[ "$WHAT" = fixtures ] && exit 0
if [ "$WHAT" = all ]; then
echo "== the tarball alone; java on PATH: $(command -v java || echo none)"
"$S" --version
echo "== synth + gptq --device cuda + eval --device cuda"
t "$S" synth /tmp/syn --hidden 2048 --intermediate 5632 --layers 8 --heads 16 --vocab 32000 --dtype fp16 -q
t "$S" gptq /tmp/syn --work-dir /tmp/syn-q --device cuda --gpu-math tf32 --calib-dataset c4 --calib-samples 64 --calib-seqlen 512 -q 2>&1 | tail -3
t "$S" eval /tmp/syn --device cuda --dataset heldout --seqlen 512 --max-windows 8 --speed
t "$S" eval /tmp/syn-q --device cuda --dataset heldout --seqlen 512 --max-windows 8 --speed
t "$S" eval /tmp/syn-q --device cpu --dataset heldout --seqlen 512 --max-windows 2
echo "== estimate (H100 datasheet), to set beside the speeds above"
for d in syn syn-q; do "$S" estimate /tmp/$d --batch 1 --prompt-tokens 128 --new-tokens 128 --gpu h100 --json > "$OUT/estimate-$d.json" 2>&1
  echo "$d: $(grep -o '"decode_tokens_per_second_per_sequence"[^,]*\|"prefill_tokens_per_second"[^,]*' "$OUT/estimate-$d.json" | tr '\n' ' ')"; done
echo "== bad input on the GPU machine"; "$S" eval /tmp/nope --device cuda --dataset heldout; echo "   [rc $?]"
fi
echo "== parity suite ($(( $(date +%s) - T0 )) s so far)"
[ -f "$P/fixture.tar.xz" ] && tar xJf "$P/fixture.tar.xz" -C /tmp/shared/models; cp -r "$P/t/shared/golden" /tmp/shared/
timeout 200 "$H/runtime/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  --sun-misc-unsafe-memory-access=allow -Xmx24g -cp "$H/lib/*:$P/t/lib/*:$ROOT/eval/src/test/resources" \
  -Dshrink.shared=/tmp/shared -Dshrink.cuda.heldoutTokens="$P/t/heldout-8x512.safetensors" \
  -Dshrink.gptq.cudaOut=/tmp/gq -Dshrink.gptq.heldoutTokens="$P/t/heldout-64x512.safetensors" -Dshrink.cubin.cache=/tmp/cubin \
  dev.shrink.kernels.cuda.DeviceSuite ${SUITE:-\
    dev.shrink.kernels.cuda.CudaConformanceTest dev.shrink.kernels.cuda.DeviceOpsConformanceTest dev.shrink.kernels.cuda.DeviceOpsForwardTest \
    dev.shrink.kernels.cuda.W4a16GemvTest dev.shrink.kernels.cuda.DecodeKernelsTest dev.shrink.eval.CudaPerplexityParityTest \
    dev.shrink.gptq.CudaGptqParityTest dev.shrink.gptq.ResidentPerplexityParityTest dev.shrink.gptq.DeviceDecoderParityTest dev.shrink.awq.CudaAwqParityTest \
    dev.shrink.awq.AwqDeviceDecoderParityTest dev.shrink.prune.CudaMasksParityTest dev.shrink.distill.CudaTrainOpsTest dev.shrink.kernels.cpu.ProvidersTest \
    dev.shrink.eval.ArchitectureGoldenTest} \
    > "$OUT/suite.log" 2>&1; echo "   suite rc $?"; tail -30 "$OUT/suite.log"
[ "$WHAT" = suite ] && exit 0
echo "== README main job ($(( $(date +%s) - T0 )) s so far)"
[ -e "$ROOT/../shared" ] || ln -s /tmp/shared "$ROOT/../shared"
t timeout 150 "$S" compare examples/compare.yaml --work-dir /tmp/cmp -q > "$OUT/compare.log" 2>&1; tail -25 "$OUT/compare.log"
cp /tmp/cmp/report.md "$OUT/" 2>/dev/null
echo "== total $(( $(date +%s) - T0 )) s"
