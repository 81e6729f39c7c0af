#!/usr/bin/env bash
# CPU SGEMM benchmark: median GFLOP/s with min/max over repetitions, as % of the machine's peak,
# for square sizes and the model's shapes. Builds first if needed. Extra arguments go to GemmBench
# (e.g. --threads 1,2 --sizes 1024,2048,4096).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
source "$ROOT/scripts/jdk.sh"
[ -f "$ROOT/cli/target/shrink.classpath" ] || "$ROOT/shrink" --version >/dev/null
exec "$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector -cp "$(cat "$ROOT/cli/target/shrink.classpath")" \
  dev.shrink.kernels.bench.GemmBench "$@"
