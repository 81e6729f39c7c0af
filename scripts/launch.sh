# Sourced by the two launchers, ./shrink (a checkout) and bin/shrink (the tarball scripts/dist.sh builds):
# how the CLI's JVM is started. Defines shrink_launch JAVA CLASSPATH [JVM options...] -- [shrink arguments...].
#   SHRINK_HEAP=16g   the Java heap (default: the JVM's, a quarter of RAM)

# Every run needs these: the Vector API, FFM and Arrow's memory without warnings; output in UTF-8
# whatever the locale (Java would print ± and – as ? where LANG is unset, as under cron or env -i).
SHRINK_JVM_FLAGS=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
                  --sun-misc-unsafe-memory-access=allow --add-opens=java.base/java.nio=ALL-UNNAMED
                  -Dstdout.encoding=UTF-8 -Dstderr.encoding=UTF-8)

# stderr without the JVM's "WARNING: Using incubator modules: jdk.incubator.vector", which it prints
# first, before any output of Shrink's: the first line is read (byte by byte, so nothing else is held
# back), dropped if it is that warning, and everything after passes through cat as it comes (the
# progress lines that end in \r included).
shrink_drop_incubator_warning() {
  local line n=0
  # the JVM's own lines come first: "Picked up JAVA_TOOL_OPTIONS: ..." (kept) may precede the warning
  while [ $n -lt 3 ]; do
    if ! IFS= read -r line; then
      [ -n "$line" ] && printf '%s' "$line" # a last line without its newline
      return 0
    fi
    n=$((n + 1))
    [ "$line" = "WARNING: Using incubator modules: jdk.incubator.vector" ] && break
    printf '%s\n' "$line"
    case "$line" in "Picked up "*) ;; *) break ;; esac
  done
  exec cat
}

shrink_launch() {
  local java="$1" cp="$2"
  shift 2
  local opts=("${SHRINK_JVM_FLAGS[@]}")
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  [ -n "${SHRINK_HEAP:-}" ] && opts+=("-Xmx$SHRINK_HEAP")
  local rc=0 fd filter
  # Not exec: the launcher waits for the filter, so that all of stderr is written when it exits
  # (a caller reading a file it redirected stderr to sees every line); the exit code is Java's.
  exec {fd}> >(shrink_drop_incubator_warning >&2)
  filter=$!
  "$java" "${opts[@]}" -cp "$cp" dev.shrink.cli.Main "$@" 2>&"$fd" || rc=$?
  exec {fd}>&-
  wait "$filter" 2>/dev/null || true
  return "$rc"
}
