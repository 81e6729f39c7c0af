#!/usr/bin/env bash
# CPU perplexity speed before/after, measured side by side in one run: the CLI of BASE_REV (a worktree
# under /tmp, built there) and of this checkout alternate RUNS times on the same windows of the fixture's
# heldout text; prints each run's tokens/s, the medians, their spread and the ratio.
#   scripts/bench/cpu-eval-ab.sh BASE_REV [RUNS=5] [WINDOWS=16] [THREADS=0]
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
BASE_REV="$1"; RUNS="${2:-5}"; WINDOWS="${3:-16}"; THREADS="${4:-0}"
SHARED="$(readlink -f "${SHRINK_SHARED:-$ROOT/../shared}")"
B=/tmp/shrink-ab-$(git -C "$ROOT" rev-parse --short "$BASE_REV")
[ -d "$B" ] || git -C "$ROOT" worktree add -q --detach "$B" "$BASE_REV"
"$B/shrink" --version >/dev/null
"$ROOT/shrink" --version >/dev/null
run() { SHRINK_SHARED="$SHARED" "$1/shrink" eval "$SHARED/models/fixture-llama-14m" --dataset heldout --seqlen 512 \
          --max-windows "$WINDOWS" --device cpu --threads "$THREADS" -q --json 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin)['results'][0]; print(round(r['windows']*r['seqlen']/r['seconds'],1))"; }
base=(); head=()
for i in $(seq "$RUNS"); do
  base+=("$(run "$B")"); head+=("$(run "$ROOT")")
  echo "run $i: base ${base[-1]} tok/s, this ${head[-1]} tok/s"
done
python3 - "${base[*]}" "${head[*]}" <<'PY'
import statistics as s, sys
b = [float(x) for x in sys.argv[1].split()]; h = [float(x) for x in sys.argv[2].split()]
mb, mh = s.median(b), s.median(h)
print(f"base median {mb:.1f} tok/s ({min(b):.1f}..{max(b):.1f}); this median {mh:.1f} ({min(h):.1f}..{max(h):.1f}); "
      f"ratio this/base {mh / mb:.3f}; per-pair ratios {', '.join(f'{y / x:.3f}' for x, y in zip(b, h))}")
PY
