#!/usr/bin/env bash
# Packs what the GPU machine needs to prove the release tarball there, in one device call:
#   OUT/shrink.tar.xz                        scripts/dist.sh's tarball (runtime, jars, tokenizer library), as xz
#   OUT/fixture.tar.xz, OUT/datasets.tar.xz  fixture-llama-14m, the C4 sample and the heldout text (xz: the
#                                            device tool carries at most 64 MiB with the checkout)
#   OUT/t/lib/*.jar                          the test classes and JUnit, for the CUDA parity suite
#   OUT/t/heldout-{8,64}x512.safetensors     the fixture's first heldout windows as token ids
#   OUT/device-dist-run.sh                   what runs there (a copy of scripts/device-dist-run.sh)
# Usage, from the repository root:  scripts/device-dist-pack.sh [OUT=.device/dist]
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
source "$ROOT/scripts/jdk.sh"
cd "$ROOT"
OUT="${1:-.device/dist}"
SHARED="$(readlink -f "${SHRINK_SHARED:-$ROOT/../shared}")"
[ -d "$SHARED/models/fixture-llama-14m" ] || { echo "device-dist-pack: no $SHARED/models/fixture-llama-14m (set SHRINK_SHARED)" >&2; exit 2; }
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qxF "/.device/" "$exclude" 2>/dev/null || echo "/.device/" >> "$exclude"

scripts/dist.sh >&2
rm -rf "$OUT"; mkdir -p "$OUT/t/lib" "$OUT/t/shared/golden"
# the release tarball's files recompressed with xz (9 MiB less than its gzip: room for the fixture model)
gzip -dc "$(ls -t dist/shrink-*-linux-x86_64.tar.gz | grep -v parquet | head -1)" | xz -9e -T0 > "$OUT/shrink.tar.xz"
# NO_FIXTURE=1: without the fixture model (19 MiB), for a suite of fixture-free tests when the checkout is large
[ -n "${NO_FIXTURE:-}" ] || tar cf - -C "$SHARED/models" fixture-llama-14m | xz -9 -T0 > "$OUT/fixture.tar.xz"
tar cJf "$OUT/datasets.tar.xz" -C "$SHARED/datasets" c4-sample literature-heldout wikitext-2-raw
cp "$SHARED/golden/goldens-fixture-llama-14m.json" "$SHARED/golden/fixture-llama-14m.calib-c4-128x512.safetensors" \
  "$OUT/t/shared/golden/"

mvn -B -q -o -Dstyle.color=never -DskipTests test-compile >&2
for m in core kernels calib-data eval compress-gptq compress-awq prune distill; do
  # the architecture fixtures stay out (they travel in the checkout: device-dist-run.sh puts
  # eval/src/test/resources on the class path)
  (cd "$m/target/test-classes" && "$JAVA_HOME/bin/jar" cf "$ROOT/$OUT/t/lib/shrink-$m-tests.jar" $(ls -A | grep -vx arch))
done
cp_file=$(mktemp)
for m in eval kernels; do
  mvn -B -q -o dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file" -pl "$m" >/dev/null
  tr ':' '\n' < "$cp_file" | grep -E '/(junit-[a-z-]+|opentest4j|apiguardian-api)-[0-9][^/]*\.jar$' \
    | while read -r jar; do cp "$jar" "$OUT/t/lib/"; done
done
mvn -B -q -o dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file" -pl eval >/dev/null
for n in 8 64; do
  "$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
    --sun-misc-unsafe-memory-access=allow -Dshrink.shared="$SHARED" \
    -cp "eval/target/test-classes:eval/target/classes:core/target/classes:kernels/target/classes:calib-data/target/classes:$(cat "$cp_file")" \
    dev.shrink.eval.HeldoutTokenWindows "$SHARED/models/fixture-llama-14m" "$OUT/t/heldout-${n}x512.safetensors" "$n" 512 \
    2>&1 | grep -v -e SLF4J -e incubator >&2
done
rm -f "$cp_file"
cp scripts/device-dist-run.sh scripts/device-eval-7b.sh scripts/bench/hf_ppl.py scripts/bench/compare-7b.yaml scripts/fixtures/make_arch_fixtures.py "$OUT/"
size=$(( ($(du -sb "$OUT" | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)) / 1048576 ))
echo "device-dist-pack: $OUT with the checkout: $size MiB" >&2
[ "$size" -lt 63 ] || { echo "device-dist-pack: $size MiB with the checkout; the device tool carries at most 64 MiB (NO_FIXTURE=1 leaves the fixture out)" >&2; exit 2; }
