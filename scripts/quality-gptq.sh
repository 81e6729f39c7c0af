#!/usr/bin/env bash
# Reproduces the GPTQ quality figures of issue 3 on fixture-llama-14m with the golden calibration
# windows: for each configuration, quantize, then evaluate heldout and wikitext2 (full sets), and
# print the figure beside the reference of shared/golden/README.md. Slow on 2 cores (minutes per
# configuration); results and logs go to ${OUT:-/tmp/shrink-quality}.
#   scripts/quality-gptq.sh [CONFIG ...]     CONFIG in: rtn-sym gptq-sym gptq-sym-act gptq-asym gptq-w3-asym
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
SHARED="${SHRINK_SHARED:-$ROOT/../shared}"
OUT="${OUT:-/tmp/shrink-quality}"
MODEL="$SHARED/models/fixture-llama-14m"
TOKENS="$SHARED/golden/fixture-llama-14m.calib-c4-128x512.safetensors"
mkdir -p "$OUT"
declare -A ARGS=(
  [rtn-sym]="--method rtn --sym"
  [gptq-sym]="--sym"
  [gptq-sym-act]="--sym --act-order"
  [gptq-asym]="--asym"
  [gptq-w3-asym]="--asym --w-bits 3"
)
declare -A REF_HELDOUT=([rtn-sym]=43.7407 [gptq-sym]=43.3101 [gptq-sym-act]=43.4389 [gptq-asym]=43.3283 [gptq-w3-asym]=44.0696)
declare -A REF_WIKI=([rtn-sym]=113.1225 [gptq-sym]=112.8750 [gptq-sym-act]=112.2022 [gptq-asym]=111.7649 [gptq-w3-asym]=116.2309)
CONFIGS=("$@")
[ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(rtn-sym gptq-sym gptq-sym-act gptq-asym gptq-w3-asym)
for c in "${CONFIGS[@]}"; do
  [ -n "${ARGS[$c]:-}" ] || { echo "unknown config $c" >&2; exit 2; }
  "$ROOT/shrink" gptq "$MODEL" --work-dir "$OUT/$c" --overwrite --calib-tokens "$TOKENS" ${ARGS[$c]} -q > "$OUT/$c.gptq.log"
  "$ROOT/shrink" eval --model "$OUT/$c" --dataset heldout,wikitext2 -q --json -o "$OUT/$c.eval.json" > /dev/null
done
printf "%-14s %10s %10s %7s %10s %10s %7s\n" config heldout ref diff wikitext2 ref diff
for c in "${CONFIGS[@]}"; do
  python3 - "$OUT/$c.eval.json" "$c" "${REF_HELDOUT[$c]}" "${REF_WIKI[$c]}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r = {x["dataset"]: x["ppl"] for x in d["results"]}
h, w = float(sys.argv[3]), float(sys.argv[4])
print(f"{sys.argv[2]:<14} {r['heldout']:10.4f} {h:10.4f} {100*(r['heldout']/h-1):+6.2f}% {r['wikitext2']:10.4f} {w:10.4f} {100*(r['wikitext2']/w-1):+6.2f}%")
PY
done
