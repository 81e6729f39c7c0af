#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, after scripts/device-dist-pack.sh (the release tarball,
# the datasets): the 7B-scale figures of docs/PERFORMANCE.md, through the CLI itself, beside transformers.
#   run(command="bash .device/dist/device-eval-7b.sh a", carry=[".device/dist"])   synth 7B fp16; shrink eval --device
#        cuda --gpu-math fp16 on wikitext2 at 2048 (all windows); transformers fp16 on the same windows (hf_ppl.py)
#   run(command="bash .device/dist/device-eval-7b.sh b", carry=[".device/dist"])   gptq w4 of it; eval of the packed
#        folder (kept packed on the GPU); eval --speed-only of it (load time, decode tok/s)
#   run(command="bash .device/dist/device-eval-7b.sh d", carry=[".device/dist"])   shrink compare of compare-7b.yaml
#        (baseline, RTN w4, GPTQ w4) on cuda; then eval (fp16, packed) and eval --speed-only of its GPTQ folder
# Stages skip what a warm machine already holds (/tmp/syn7, /tmp/syn7-q). Logs and JSON go to $OUT.
set -uo pipefail
P=$(cd "$(dirname "$0")" && pwd); ROOT=$(pwd); T0=$(date +%s)
STAGE="${1:-a}"
if [ ! -x /tmp/inst/shrink-*/bin/shrink ] 2>/dev/null || [ ! -d /tmp/shared/datasets/wikitext-2-raw ]; then
  mkdir -p /tmp/inst /tmp/shared/datasets
  tar xJf "$P/shrink.tar.xz" -C /tmp/inst
  tar xJf "$P/datasets.tar.xz" -C /tmp/shared/datasets
fi
H=$(echo /tmp/inst/shrink-*); S="$H/bin/shrink"
export SHRINK_SHARED=/tmp/shared SHRINK_HEAP=${SHRINK_HEAP:-48g}
WIKI=/tmp/shared/datasets/wikitext-2-raw/wiki.test.raw
t() { local s=$(date +%s%N); "$@"; local rc=$?; echo "   [rc $rc, $(( ($(date +%s%N) - s) / 1000000 )) ms]" >&2; return $rc; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$STAGE" = a ]; then
  [ -f /tmp/syn7/config.json ] || t "$S" synth /tmp/syn7 --preset llama2-7b --dtype fp16 -q
  du -sh /tmp/syn7
  echo "== shrink eval --device cuda --gpu-math fp16, wikitext2, seqlen 2048, all windows"
  t "$S" eval /tmp/syn7 --device cuda --gpu-math fp16 --dataset wikitext2 --seqlen 2048 -q --json > "$OUT/eval-7b-fp.json"
  python3 -c "import json,sys; d=json.load(open('$OUT/eval-7b-fp.json')); r=d['results'][0]; print({k: r[k] for k in ('ppl','windows','tokens','seconds') if k in r}, 'tok/s', round(r['windows']*r['seqlen']/r['seconds']), d.get('gpu'))"
  echo "== transformers fp16, the same windows"
  t python3 "$P/hf_ppl.py" /tmp/syn7 "$WIKI" 2048 4 | tee "$OUT/hf-7b-fp.json"
  echo "== shrink again (page cache warm for both now)"
  t "$S" eval /tmp/syn7 --device cuda --gpu-math fp16 --dataset wikitext2 --seqlen 2048 -q --json > "$OUT/eval-7b-fp-2.json"
  python3 -c "import json; d=json.load(open('$OUT/eval-7b-fp-2.json')); r=d['results'][0]; print({k: r[k] for k in ('ppl','windows','seconds') if k in r}, 'tok/s', round(r['windows']*r['seqlen']/r['seconds']), d.get('gpu'))"
fi
if [ "$STAGE" = c ]; then # the packed folder's load into the batch-1 decoder, and decode beside the estimate
  [ -f /tmp/syn7/config.json ] || t "$S" synth /tmp/syn7 --preset llama2-7b --dtype fp16 -q
  [ -f /tmp/syn7-q/config.json ] || t "$S" gptq /tmp/syn7 --work-dir /tmp/syn7-q --device cuda --gpu-math tf32 \
      --calib-dataset c4 --calib-samples "${CALIB:-32}" --calib-seqlen 2048 -q 2>&1 | tail -3
  for d in ${SPEED_OF:-syn7 syn7-q}; do
    echo "== eval --speed-only of $d"
    t timeout 200 "$S" eval /tmp/$d --device cuda --dataset wikitext2 --speed-only --speed-repeats 3
  done
fi
if [ "$STAGE" = b ]; then
  [ -f /tmp/syn7/config.json ] || t "$S" synth /tmp/syn7 --preset llama2-7b --dtype fp16 -q
  [ -f /tmp/syn7-q/config.json ] || t "$S" gptq /tmp/syn7 --work-dir /tmp/syn7-q --device cuda --gpu-math tf32 \
      --calib-dataset c4 --calib-samples "${CALIB:-32}" --calib-seqlen 2048 -q 2>&1 | tail -3
  echo "== shrink eval of the GPTQ w4 folder (packed on the GPU)"
  t "$S" eval /tmp/syn7-q --device cuda --gpu-math fp16 --dataset wikitext2 --seqlen 2048 -q --json > "$OUT/eval-7b-q.json"
  python3 -c "import json; d=json.load(open('$OUT/eval-7b-q.json')); r=d['results'][0]; print({k: r[k] for k in ('ppl','windows','seconds') if k in r}, 'tok/s', round(r['windows']*r['seqlen']/r['seconds']), d.get('gpu'))"
  echo "== eval --speed-only of the GPTQ folder"
  t timeout 240 "$S" eval /tmp/syn7-q --device cuda --dataset wikitext2 --speed-only --speed-repeats 3
fi
if [ "$STAGE" = d ]; then
  [ -f /tmp/syn7/config.json ] || t "$S" synth /tmp/syn7 --preset llama2-7b --dtype fp16 -q
  echo "== shrink compare compare-7b.yaml --device cuda"
  t timeout "${CMP_TIMEOUT:-420}" "$S" compare "$P/compare-7b.yaml" --work-dir /tmp/cmp7 --device cuda -q \
      > "$OUT/compare-7b.log" 2>&1; tail -25 "$OUT/compare-7b.log"
  cp /tmp/cmp7/report.md "$OUT/report-7b.md" 2>/dev/null; cp /tmp/cmp7/report.json "$OUT/report-7b.json" 2>/dev/null
  Q=$(python3 -c "import json; d=json.load(open('/tmp/cmp7/report.json')); print(d['settings']['stage_keys']['gptq-w4'][-1])" 2>/dev/null)
  Q=$(ls -d /tmp/cmp7/stages/"$Q"* 2>/dev/null | head -1)
  if [ -n "$Q" ] && [ -f "$Q/config.json" ]; then
    echo "== eval --gpu-math fp16 of the compare's GPTQ folder $Q (packed on the GPU), all windows"
    t "$S" eval "$Q" --device cuda --gpu-math fp16 --dataset wikitext2 --seqlen 2048 -q --json > "$OUT/eval-7b-q.json"
    python3 -c "import json; d=json.load(open('$OUT/eval-7b-q.json')); r=d['results'][0]; print({k: r[k] for k in ('ppl','windows','seconds') if k in r}, 'tok/s', round(r['windows']*r['seqlen']/r['seconds']), d.get('gpu'))"
    echo "== eval --speed-only of it"
    t timeout 120 "$S" eval "$Q" --device cuda --dataset wikitext2 --speed-only --speed-repeats 3
  else
    echo "no GPTQ folder found under /tmp/cmp7/stages"; ls /tmp/cmp7/stages 2>/dev/null | head
  fi
fi
echo "== stage $STAGE total $(( $(date +%s) - T0 )) s"
