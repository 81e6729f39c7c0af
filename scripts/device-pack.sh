#!/usr/bin/env bash
# Packs what the GPU machine needs to run Shrink's CUDA suite, which has no JDK and no Maven:
#   OUT/jre.tgz          a jlink'd Java 25 runtime (../shared/device/make-jre.sh, ~23 MB)
#   OUT/lib/*.jar        core, kernels, calib-data, eval, compress-gptq, compress-awq, prune, their test classes,
#                        Jackson and JUnit
#                        (not the tokenizer's 18 MB native jar, Arrow or Netty: the GPU path needs none)
#   OUT/shared/...       fixture-llama-14m, its golden numbers and the reference's calibration windows (~27 MB)
#   OUT/heldout-8x512.safetensors  the fixture's first 8 heldout windows, tokenized here (and 64: heldout-64x512)
#   OUT/device-test.sh   the parity suite that runs there (a copy of scripts/device-test.sh)
#   OUT/device-bench.sh  the benchmarks that run there (a copy of scripts/device-bench.sh)
#   OUT/device-evalspeed.sh  decode tok/s of a 7B-shaped folder and its RTN w4 through eval's device path
# Usage, from the repository root:  scripts/device-pack.sh [OUT=.device/cuda]
# Then, with the device tool:  run(command="bash .device/cuda/device-test.sh", carry=[".device/cuda"])
# (a folder of its own under .device, so that other things kept in .device need not travel too)
# Everything under OUT must stay under the tool's 64 MiB (checked at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
source "$ROOT/scripts/jdk.sh"
cd "$ROOT"
OUT="${1:-.device/cuda}"
SHARED="${SHRINK_SHARED:-$ROOT/../shared}"
MODEL="$SHARED/models/fixture-llama-14m"
[ -d "$MODEL" ] || { echo "device-pack: no fixture model at $MODEL (set SHRINK_SHARED)" >&2; exit 2; }

# The pack folder must never be committed: ignore it in this checkout (worktrees share one exclude file).
if [ "${OUT#/}" = "$OUT" ]; then
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  top="/${OUT%%/*}/"
  grep -qxF "$top" "$exclude" 2>/dev/null || echo "$top" >> "$exclude"
fi

echo "device-pack: building..." >&2
# One reactor build (with the parent, -am), nothing installed into ~/.m2: the modules' jars and each
# module's test classpath (target/test.classpath, sibling modules as their target/ jars).
log=$(mktemp)
if ! mvn -B -q -o -Dstyle.color=never -DskipTests -Dmdep.outputFile=target/test.classpath \
     -pl core,kernels,calib-data,eval,compress-gptq,compress-awq,prune -am package dependency:build-classpath >"$log" 2>&1; then
  cat "$log" >&2
  echo "device-pack: the build failed" >&2
  exit 2
fi
rm -f "$log"

mkdir -p "$OUT"
rm -rf "$OUT/lib" "$OUT/shared"
mkdir -p "$OUT/lib" "$OUT/shared/models" "$OUT/shared/golden"

# Java runtime (make-jre.sh may fail to note the folder in .git/info/exclude in a worktree; the tgz is what counts)
"$SHARED/device/make-jre.sh" "$OUT" >/dev/null 2>&1 || true
[ -s "$OUT/jre.tgz" ] || { echo "device-pack: $SHARED/device/make-jre.sh did not write $OUT/jre.tgz" >&2; exit 2; }

# Our jars, and the test classes as jars
for m in core kernels calib-data eval compress-gptq compress-awq prune; do
  for f in "$m"/target/shrink-"$m"-*.jar; do   # the main jar (eval's Maven test-jar is packed below with the rest)
    case "$f" in *-tests.jar) ;; *) cp "$f" "$OUT/lib/" ;; esac
  done
  "$JAVA_HOME/bin/jar" cf "$OUT/lib/shrink-$m-tests.jar" -C "$m/target/test-classes" .
done
# Third-party jars the GPU path and the tests use: Jackson (config.json, golden JSON) and JUnit
classpath() { # the test classpath of module $1 (written by the build above)
  [ -s "$1/target/test.classpath" ] || { echo "device-pack: no classpath for $1" >&2; exit 2; }
  cat "$1/target/test.classpath"
}
{ classpath kernels; echo ":"; classpath eval; } | tr ':' '\n' | sort -u | grep -E '/(jackson-(core|databind|annotations)|junit-[a-z-]+|opentest4j|apiguardian-api)-[0-9][^/]*\.jar$' \
  | while read -r jar; do cp "$jar" "$OUT/lib/"; done

# The fixture, its golden numbers, and its heldout windows as token ids (no tokenizer needed there)
cp -r "$MODEL" "$OUT/shared/models/"
chmod -R u+w "$OUT/shared"
cp "$SHARED/golden/goldens-fixture-llama-14m.json" "$SHARED/golden/fixture-llama-14m.calib-c4-128x512.safetensors" \
  "$OUT/shared/golden/"
"$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  --sun-misc-unsafe-memory-access=allow -Dshrink.shared="$SHARED" \
  -cp "eval/target/test-classes:eval/target/classes:$(classpath eval)" \
  dev.shrink.eval.HeldoutTokenWindows "$MODEL" "$OUT/heldout-8x512.safetensors" 8 512 2>&1 | grep -v -e SLF4J -e incubator >&2
"$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  --sun-misc-unsafe-memory-access=allow -Dshrink.shared="$SHARED" \
  -cp "eval/target/test-classes:eval/target/classes:$(classpath eval)" \
  dev.shrink.eval.HeldoutTokenWindows "$MODEL" "$OUT/heldout-64x512.safetensors" 64 512 2>&1 | grep -v -e SLF4J -e incubator >&2

cp scripts/device-test.sh "$OUT/device-test.sh"
cp scripts/device-bench.sh "$OUT/device-bench.sh"
cp scripts/device-evalspeed.sh "$OUT/device-evalspeed.sh"

size=$(du -sm "$OUT" | cut -f1)
echo "device-pack: $OUT holds $size MiB ($(ls "$OUT/lib" | wc -l) jars):" >&2
du -sh "$OUT"/* >&2
if [ "$size" -ge 60 ]; then
  echo "device-pack: $OUT is $size MiB; the device tool carries at most 64 MiB with the checkout" >&2
  exit 2
fi
