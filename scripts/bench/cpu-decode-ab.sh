#!/usr/bin/env bash
# CPU batch-1 speed of a float folder and its quantized folder, with a base revision's CLI and this
# checkout's, alternated in one run: prefill and decode tok/s of each `eval --speed-only` (prompt 128,
# 32 decode steps, median of 3), then the medians per (build, folder).
#   scripts/bench/cpu-decode-ab.sh BASE_REV FLOAT_DIR QUANT_DIR [ROUNDS=3] [THREADS=0]
#   SPEED="--speed-decode 256 --speed-repeats 5" scripts/bench/cpu-decode-ab.sh ...   longer timed runs (a noisy machine)
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
BASE_REV="$1"; FP="$2"; Q="$3"; ROUNDS="${4:-3}"; THREADS="${5:-0}"
SHARED="$(readlink -f "${SHRINK_SHARED:-$ROOT/../shared}")"
B=/tmp/shrink-ab-$(git -C "$ROOT" rev-parse --short "$BASE_REV")
[ -d "$B" ] || git -C "$ROOT" worktree add -q --detach "$B" "$BASE_REV"
"$B/shrink" --version >/dev/null; "$ROOT/shrink" --version >/dev/null
run() { SHRINK_SHARED="$SHARED" "$1/shrink" eval "$2" --dataset heldout --speed-only --device cpu --threads "$THREADS" \
          ${SPEED:-} -q --json 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin)['speed']; \
print(round(s['prefill_tokens_per_second'],1), round(s['decode_tokens_per_second'],1), round(s['decode_max'],1))"; }
declare -A out
for i in $(seq "$ROUNDS"); do
  for build in base this; do
    dir=$([ $build = base ] && echo "$B" || echo "$ROOT")
    for m in fp q; do
      r=$(run "$dir" "$([ $m = fp ] && echo "$FP" || echo "$Q")")
      out[$build-$m]+="$r;"; echo "round $i $build $m: prefill/decode/best decode $r tok/s"
    done
  done
done
python3 - "${out[base-fp]}" "${out[base-q]}" "${out[this-fp]}" "${out[this-q]}" <<'PY'
import statistics as st, sys
names = ["base fp", "base quant", "this fp", "this quant"]
med, best = {}, {}
for n, a in zip(names, sys.argv[1:]):
    pairs = [tuple(map(float, x.split())) for x in a.strip(";").split(";")]
    d = [p[1] for p in pairs]; pf = [p[0] for p in pairs]; b = [p[2] for p in pairs]
    med[n] = st.median(d); best[n] = max(b)
    print(f"{n:11s} decode median {st.median(d):8.1f} tok/s ({min(d):.1f}..{max(d):.1f}), best run {max(b):.1f}, prefill median {st.median(pf):.1f}")
for what, m in (("medians", med), ("best runs", best)):
    print(f"decode {what}: this/base fp {m['this fp']/m['base fp']:.2f}x, this/base quant {m['this quant']/m['base quant']:.2f}x, "
          f"this quant/fp {m['this quant']/m['this fp']:.2f}x")
PY
