#!/usr/bin/env bash
# Packs what the GPU machine needs for distillation there (it has no JDK, Maven or tokenizer library):
#   OUT/jre.tgz            a jlink'd Java 25 runtime with java.management (DistillStage reads CPU time)
#   OUT/lib/*.jar          core, kernels, calib-data, eval, prune, distill (+ distill's and kernels' test
#                          classes: CudaTrainOpsTest, DeviceDistill, DeviceSuite), Jackson, JUnit
#   OUT/shared/models/     fixture-llama-14m (the teacher) and stories260K-hf (the parity tests)
#   OUT/tokens/            the training text and the heldout / wikitext2 evaluation windows as token ids,
#                          tokenized here by DistillTokens
#   OUT/device-distill.sh  what runs there (a copy of scripts/device-distill.sh)
# Usage, from the repository root:  scripts/device-distill-pack.sh [OUT=.device/distill]
# Then, with the device tool:  run(command="bash .device/distill/device-distill.sh", carry=[".device/distill"])
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
source "$ROOT/scripts/jdk.sh"
cd "$ROOT"
OUT="${1:-.device/distill}"
SHARED="${SHRINK_SHARED:-$ROOT/../shared}"
MODEL="$SHARED/models/fixture-llama-14m"
STORIES="$SHARED/models/stories260K-hf"
[ -d "$MODEL" ] && [ -d "$STORIES" ] || { echo "device-distill-pack: no fixture models under $SHARED/models (set SHRINK_SHARED)" >&2; exit 2; }

if [ "${OUT#/}" = "$OUT" ]; then
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  top="/${OUT%%/*}/"
  grep -qxF "$top" "$exclude" 2>/dev/null || echo "$top" >> "$exclude"
fi

MODULES=core,kernels,calib-data,eval,prune,distill
echo "device-distill-pack: building..." >&2
# One reactor build, nothing installed into ~/.m2: the jars and each module's test classpath
# (target/test.classpath, sibling modules as their target/ jars).
log=$(mktemp)
if ! mvn -B -q -o -Dstyle.color=never -DskipTests -Dmdep.outputFile=target/test.classpath \
     -pl "$MODULES" -am package dependency:build-classpath >"$log" 2>&1; then
  cat "$log" >&2
  echo "device-distill-pack: the build failed" >&2
  exit 2
fi
rm -f "$log"

mkdir -p "$OUT"
rm -rf "$OUT/lib" "$OUT/shared"
mkdir -p "$OUT/lib" "$OUT/shared/models" "$OUT/tokens"
if [ ! -s "$OUT/jre.tgz" ]; then
  JRE_MODULES=java.base,jdk.incubator.vector,jdk.unsupported,java.logging,java.management,jdk.management \
    "$SHARED/device/make-jre.sh" "$OUT" >/dev/null 2>&1 || true
fi
[ -s "$OUT/jre.tgz" ] || { echo "device-distill-pack: $SHARED/device/make-jre.sh did not write $OUT/jre.tgz" >&2; exit 2; }

for m in ${MODULES//,/ }; do
  for f in "$m"/target/shrink-"$m"-*.jar; do   # the main jar, not a Maven test-jar (eval builds one)
    case "$f" in *-tests.jar) ;; *) cp "$f" "$OUT/lib/" ;; esac
  done
done
for m in kernels distill; do
  "$JAVA_HOME/bin/jar" cf "$OUT/lib/shrink-$m-tests.jar" -C "$m/target/test-classes" .
done
classpath() { # the test classpath of module $1 (written by the build above)
  [ -s "$1/target/test.classpath" ] || { echo "device-distill-pack: no classpath for $1" >&2; exit 2; }
  cat "$1/target/test.classpath"
}
CP="$(classpath distill)"
{ echo "$CP"; echo ":"; classpath kernels; } | tr ':' '\n' | sort -u | grep -E '/(jackson-(core|databind|annotations)|junit-[a-z-]+|opentest4j|apiguardian-api)-[0-9][^/]*\.jar$' \
  | while read -r jar; do cp "$jar" "$OUT/lib/"; done

cp -r "$MODEL" "$STORIES" "$OUT/shared/models/"
chmod -R u+w "$OUT/shared"

if [ ! -s "$OUT/tokens/train.safetensors" ] || [ "${RETOKENIZE:-}" = 1 ]; then
  "$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
    --sun-misc-unsafe-memory-access=allow -Dshrink.shared="$SHARED" \
    -cp "distill/target/test-classes:distill/target/classes:$CP" \
    dev.shrink.distill.DistillTokens "$MODEL" "$OUT/tokens" 200 512 2>&1 | grep -v -e SLF4J -e incubator >&2
fi
cp scripts/device-distill.sh "$OUT/device-distill.sh"

# the tool carries at most 64 MiB: this folder and the checkout's tracked files (~2 MiB) together
bytes=$(du -sb "$OUT" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "device-distill-pack: $OUT holds $((bytes / 1048576)) MiB ($(ls "$OUT/lib" | wc -l) jars), the checkout $((tree / 1048576)) MiB:" >&2
du -sh "$OUT"/* >&2
if [ $((bytes + tree)) -ge $((63 * 1048576)) ]; then
  echo "device-distill-pack: $OUT and the checkout make $(((bytes + tree) / 1048576)) MiB; the device tool carries at most 64 MiB" >&2
  exit 2
fi
