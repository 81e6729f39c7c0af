#!/usr/bin/env bash
# Builds the Shrink tarball: dist/shrink-VERSION-linux-x86_64.tar.gz, which runs on any Linux x86-64
# machine with no JDK and no network:
#   bin/shrink                  the launcher (bin/launch.sh: scripts/launch.sh, as ./shrink uses it)
#   runtime/                    a jlink'd Java 25 runtime with only the modules Shrink needs
#   lib/*.jar                   the CLI's runtime classpath (cli/target/runtime.classpath), no test library;
#                               DJL's tokenizers jar without its native libraries
#   lib/native/libtokenizers.so the tokenizers' linux-x86_64 library, loaded from there (no download, no cache)
#   lib/optional/               only with --with-parquet: Arrow's Parquet reader (arrow-dataset, linux-x86_64 only)
#   THIRD-PARTY-NOTICES.txt, licenses/   each bundled jar, its version and license, the license texts it carries
# Usage, from anywhere:
#   scripts/dist.sh                   build dist/shrink-VERSION-linux-x86_64.tar.gz
#   scripts/dist.sh --with-parquet    ... and put the Parquet part in: dist/shrink-VERSION-linux-x86_64-parquet.tar.gz
#   scripts/dist.sh --check [TARBALL] unpack a built tarball in a temp folder and run it with an empty
#                                     environment and no network (the newest tarball in dist/ by default)
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
MAX_MB=80
# What Shrink's code and its libraries use of the JDK (jdeps over the runtime classpath, then trial):
#   java.management, jdk.management  pipeline's and distill's CPU-time readings; DJL's CUDA probe
#   java.logging                      JNA, Netty
#   jdk.unsupported                   sun.misc.Unsafe (Arrow's memory, Netty, gson)
# Not java.desktop (DJL's image classes, JNA's AWT helpers), java.sql (gson, picocli, snakeyaml: optional),
# java.compiler (annotations only): no Shrink path touches them.
MODULES=java.base,java.logging,java.management,jdk.management,jdk.unsupported,jdk.incubator.vector

die() { echo "dist: error: $*" >&2; exit 2; }

check() {
  local tarball="${1:-}"
  if [ -z "$tarball" ]; then
    tarball=$(ls -t "$ROOT"/dist/shrink-*-linux-x86_64*.tar.gz 2>/dev/null | head -1 || true)
    [ -n "$tarball" ] || die "no tarball in $ROOT/dist; run scripts/dist.sh first"
  fi
  [ -f "$tarball" ] || die "$tarball: not found"
  local shared="${SHRINK_SHARED:-$ROOT/../shared}" tmp
  shared="$(readlink -f "$shared")"
  [ -d "$shared/models/stories260K-hf" ] || die "$shared/models/stories260K-hf: not found (set SHRINK_SHARED)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  tar xzf "$tarball" -C "$tmp"
  local bin
  bin=$(echo "$tmp"/shrink-*/bin/shrink)
  [ -x "$bin" ] || die "$tarball: no shrink-*/bin/shrink inside"
  mkdir -p "$tmp/home"
  # no JDK, no JAVA_HOME, an empty HOME; no network where a network namespace can be made
  local run=(env -i PATH=/usr/bin:/bin HOME="$tmp/home" SHRINK_SHARED="$shared")
  if unshare -n true 2>/dev/null; then run=(unshare -n "${run[@]}"); net="no network"; else net="network present"; fi
  local fails=0
  expect() { # NAME RC STDERR-PATTERN COMMAND...: the exit code and a line of stderr
    local name="$1" rc="$2" pat="$3" got=0
    shift 3
    (cd "$tmp" && "${run[@]}" "$bin" "$@") >"$tmp/out" 2>"$tmp/err" || got=$?
    if [ "$got" != "$rc" ] || { [ -n "$pat" ] && ! grep -qE "$pat" "$tmp/err"; } || grep -q 'incubator modules' "$tmp/err"; then
      echo "dist --check: FAIL $name: exit $got (expected $rc)"; sed 's/^/  | /' "$tmp/out" "$tmp/err" | tail -20
      fails=$((fails + 1))
    else
      echo "dist --check: ok   $name"
    fi
  }
  echo "dist --check: $(basename "$tarball") in $tmp ($net, env -i, HOME=$tmp/home)"
  expect "--version" 0 "" --version
  sed 's/^/  /' "$tmp/out"
  local cuda=
  grep -q '^backend cuda: available' "$tmp/out" && cuda=1
  expect "eval (tokenizer, cpu)" 0 "" eval --model "$shared/models/stories260K-hf" --dataset tinystories --max-windows 2 --device cpu
  sed 's/^/  /' "$tmp/out"
  if [ -n "$cuda" ]; then   # where DJL sees CUDA, it must still take the bundled CPU tokenizer library
    expect "eval --device cuda" 0 "" eval --model "$shared/models/stories260K-hf" --dataset tinystories --max-windows 2 --device cuda
    sed 's/^/  /' "$tmp/out"
  fi
  expect "generate" 0 "" generate --model "$shared/models/stories260K-hf" --prompt "Once upon a time" --max-new-tokens 8
  expect "bad input: one line, exit 2" 2 "^shrink: error: .*nope.*" inspect --model "$tmp/nope"
  [ "$(wc -l <"$tmp/err")" = 1 ] || { echo "dist --check: FAIL bad input printed $(wc -l <"$tmp/err") lines"; fails=$((fails + 1)); }
  : > "$tmp/junk.parquet"
  if [ -d "$(dirname "$bin")/../lib/optional" ]; then
    expect "parquet (part present: the native reader runs)" 2 "junk.parquet: cannot read as Parquet" \
      gptq "$shared/models/stories260K-hf" --work-dir "$tmp/q" --calib-dataset "$tmp/junk.parquet" --calib-samples 2 --calib-seqlen 16
  else
    expect "parquet (part absent: says what to install)" 2 "junk.parquet: .*--with-parquet" \
      gptq "$shared/models/stories260K-hf" --work-dir "$tmp/q" --calib-dataset "$tmp/junk.parquet" --calib-samples 2 --calib-seqlen 16
  fi
  if [ -e "$tmp/home/.djl.ai" ]; then
    echo "dist --check: FAIL DJL wrote $tmp/home/.djl.ai:"; find "$tmp/home/.djl.ai" | head; fails=$((fails + 1))
  else
    echo "dist --check: ok   nothing under HOME/.djl.ai (the bundled tokenizer library was used)"
  fi
  [ "$fails" = 0 ] || die "$fails check(s) failed"
  echo "dist --check: all passed"
}

WITH_PARQUET=
case "${1:-}" in
  --check) shift; check "$@"; exit 0 ;;
  --with-parquet) WITH_PARQUET=1 ;;
  "") ;;
  *) die "unknown option $1 (use --with-parquet or --check [TARBALL])" ;;
esac

source "$ROOT/scripts/jdk.sh"
[ -x "$JAVA_HOME/bin/jlink" ] || die "$JAVA_HOME has no jlink"
[ "$(uname -m)" = x86_64 ] || die "this builds a linux-x86_64 tarball; run it on one"
cd "$ROOT"
VERSION=$(sed -n 's/.*String VERSION = "\(.*\)";.*/\1/p' core/src/main/java/dev/shrink/core/Version.java)
[ -n "$VERSION" ] || die "no VERSION in core/src/main/java/dev/shrink/core/Version.java"
REV="$(git describe --always --dirty 2>/dev/null || echo unknown)"
NAME="shrink-$VERSION-linux-x86_64"
TARBALL="dist/$NAME${WITH_PARQUET:+-parquet}.tar.gz"

echo "dist: building $REV..." >&2
log=$(mktemp)
if ! mvn -B -q -Dstyle.color=never -DskipTests -Dshrink.revision="$REV" package >"$log" 2>&1; then
  cat "$log" >&2
  die "the build failed"
fi
rm -f "$log"
CLASSPATH_FILE=cli/target/runtime.classpath
[ -s "$CLASSPATH_FILE" ] || die "$CLASSPATH_FILE was not written (cli/pom.xml)"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
D="$STAGE/$NAME"
mkdir -p "$D/bin" "$D/lib/native"
cp scripts/dist/shrink "$D/bin/shrink"
cp scripts/launch.sh "$D/bin/launch.sh"
chmod 755 "$D/bin/shrink"

# jars: the CLI's own, then its runtime classpath; the notices cover the third-party ones
bundled=()
cp cli/target/shrink-cli-*.jar "$D/lib/"
for jar in $(tr ':' ' ' < "$CLASSPATH_FILE"); do
  base=$(basename "$jar")
  case "$base" in
    arrow-dataset-*|arrow-c-data-*)   # the Parquet reader (76 MB of native code) and the C data bridge only it uses
      [ -n "$WITH_PARQUET" ] || continue
      mkdir -p "$D/lib/optional"
      if [[ "$base" == arrow-dataset-* ]]; then
        # only the linux-x86_64 library of the five platforms' it carries
        cp "$jar" "$D/lib/optional/$base"
        zip -q -d "$D/lib/optional/$base" 'arrow_dataset_jni/aarch_64/*' 'arrow_dataset_jni/x86_64/*.dylib' \
          'arrow_dataset_jni/x86_64/*.dll' >/dev/null
      else
        cp "$jar" "$D/lib/optional/"
      fi ;;
    tokenizers-*)
      # the native library goes to lib/native (bin/shrink points DJL at it); the jar keeps its classes and
      # native/lib/tokenizers.properties (DJL reads the version from it), not the four platforms' libraries
      unzip -q -p "$jar" native/lib/linux-x86_64/cpu/libtokenizers.so > "$D/lib/native/libtokenizers.so"
      [ -s "$D/lib/native/libtokenizers.so" ] || die "$jar has no native/lib/linux-x86_64/cpu/libtokenizers.so"
      cp "$jar" "$D/lib/$base"
      zip -q -d "$D/lib/$base" 'native/lib/*/*' >/dev/null ;;
    *) cp "$jar" "$D/lib/" ;;
  esac
  case "$jar" in */target/*) ;; *) bundled+=("$jar") ;; esac
done

echo "dist: jlink ($MODULES)..." >&2
# zip-0: the tarball's gzip compresses the modules file better than jlink's zip-9 does (20.6 vs 24.1 MB)
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-man-pages --no-header-files \
  --compress=zip-0 --output "$D/runtime" 2>&1 | { grep -v 'incubator modules' || true; } >&2

"$JAVA_HOME/bin/java" "$ROOT/scripts/dist/Notices.java" "$D" "${bundled[@]}"
cat > "$D/README.txt" <<EOF
Shrink $VERSION (revision $REV) for Linux x86-64: compress Hugging Face language models.

  bin/shrink --help        the commands (no JDK, Maven or network needed: the Java runtime is in runtime/)
  bin/shrink --version     the version, the Java runtime, and which backends (cpu, cuda) work here

SHRINK_HEAP=16g sets the Java heap. The dataset presets (wikitext2, ptb, tinystories, heldout) are read
from the folder SHRINK_SHARED names; any text, .jsonl or .arrow file works as --dataset or --calib-dataset.
$(if [ -n "$WITH_PARQUET" ]; then echo "Parquet files are read through lib/optional (Arrow's dataset reader)."; else
echo "Parquet calibration files need the Parquet part, which this tarball leaves out (76 MB): build the"
echo "tarball with scripts/dist.sh --with-parquet, or convert the file to .jsonl or .arrow."; fi)
The CUDA backend needs an NVIDIA driver (libcuda.so.1) and the CUDA 12/13 NVRTC and cuBLAS libraries.
Third-party software and its licenses: THIRD-PARTY-NOTICES.txt, licenses/, runtime/legal/.
EOF

mkdir -p dist   # ignored (.gitignore)
tar czf "$TARBALL.tmp" -C "$STAGE" "$NAME"
mv "$TARBALL.tmp" "$TARBALL"

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
gz() { tar czf - -C "$STAGE" "$@" | wc -c; }
size=$(stat -c %s "$TARBALL")
echo "dist: $TARBALL: $(mb "$size") MB compressed, $(du -sm "$D" | cut -f1) MB unpacked" >&2
echo "dist:   runtime/ $(mb "$(gz "$NAME/runtime")") MB, lib/*.jar $(mb "$(gz --exclude="$NAME/lib/native" --exclude="$NAME/lib/optional" "$NAME/lib")") MB," \
  "lib/native $(mb "$(gz "$NAME/lib/native")") MB${WITH_PARQUET:+, lib/optional $(mb "$(gz "$NAME/lib/optional")") MB} (each compressed)" >&2
[ "$size" -le $((MAX_MB * 1048576)) ] || die "$TARBALL is $(mb "$size") MB, over the $MAX_MB MB budget"
echo "$TARBALL"
