#!/usr/bin/env bash
# Reproduces the distillation golden protocol of shared/golden/README.md ("Distillation after
# pruning") on fixture-llama-14m: magnitude 2:4 pruning, then 400 steps of KL(teacher || student) at
# T = 1 on 8 x 512-token windows of C4 + WikiText-2/PTB validation text, AdamW 3e-4 (20 warm-up
# steps, cosine decay, clip 1.0), then perplexity on the first 200 windows of heldout and
# wikitext2, printed beside the PyTorch reference. About an hour on 2 free cores (the run
# checkpoints every 50 steps: rerun with RESUME=1 after an interruption). Output in ${OUT:-/tmp/shrink-distill}.
#   scripts/quality-distill.sh [extra shrink distill options]
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
SHARED="${SHRINK_SHARED:-$ROOT/../shared}"
OUT="${OUT:-/tmp/shrink-distill}"
MODEL="$SHARED/models/fixture-llama-14m"
mkdir -p "$OUT"
if [ ! -d "$OUT/pruned-2of4" ]; then
  "$ROOT/shrink" prune "$MODEL" --work-dir "$OUT/pruned-2of4" --method magnitude --pattern 2:4 -q > "$OUT/prune.log"
fi
RESUME_ARGS=()
[ -n "${RESUME:-}" ] && RESUME_ARGS=(--resume)
"$ROOT/shrink" distill --teacher "$MODEL" --student "$OUT/pruned-2of4" --work-dir "$OUT/distilled" --overwrite \
  --steps 400 --batch 8 --seqlen 512 --lr 3e-4 --warmup 20 --clip 1.0 --temperature 1 --alpha 1.0 --loss kl \
  --checkpoint-every 50 --eval-windows 200 --eval-datasets heldout,wikitext2 "${RESUME_ARGS[@]}" "$@" \
  | tee "$OUT/distill.log"
python3 - "$OUT/distilled/shrink-report.json" "$SHARED/golden/fixture-llama-14m.ref-distill-2of4.json" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1])); ref = json.load(open(sys.argv[2]))
p = rep["perplexity"]
get = lambda rows, d: next(r["ppl"] for r in rows if r["dataset"] == d)
print(f"{'':10} {'teacher':>9} {'ref':>9} {'pruned':>9} {'ref':>9} {'distilled':>10} {'ref':>9}  recovered")
for d in ("heldout", "wikitext2"):
    t, b, a = get(p["teacher"], d), get(p["before"], d), get(p["after"], d)
    rt, rb, ra = ref["teacher"][d], ref["pruned"][d], ref["distilled_kl"][d]
    print(f"{d:10} {t:9.4f} {rt:9.4f} {b:9.4f} {rb:9.4f} {a:10.4f} {ra:9.4f}  {100*(b-a)/(b-t):5.1f}% (ref {100*(rb-ra)/(rb-rt):5.1f}%)")
PY
