# Sourced by ./shrink and ./run-tests: sets JAVA_HOME to a JDK 25 or newer, or explains and exits.
# Order: $JAVA_HOME when it is 25+, then /usr/lib/jvm/*25* (and newer), then `java` on the PATH.

shrink_java_major() { # prints the major version of the java binary $1, or nothing
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -1
}

shrink_find_jdk() {
  local cand major
  for cand in "${JAVA_HOME:-}" /usr/lib/jvm/*25* /usr/lib/jvm/*2[6-9]* /usr/lib/jvm/*3[0-9]* \
              "$(dirname "$(dirname "$(readlink -f "$(command -v java 2>/dev/null || echo /nonexistent)")")")"; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] && [ -x "$cand/bin/javac" ] || continue
    major=$(shrink_java_major "$cand/bin/java")
    if [ -n "$major" ] && [ "$major" -ge 25 ]; then
      export JAVA_HOME="$cand"
      return 0
    fi
  done
  echo "shrink: error: no JDK 25 or newer found (JAVA_HOME=${JAVA_HOME:-unset}, nothing in /usr/lib/jvm/*25*)." >&2
  echo "shrink: install one (e.g. Temurin 25: apt-get install temurin-25-jdk) or set JAVA_HOME to it." >&2
  exit 2
}

shrink_find_jdk
# Maven itself runs on this JDK; keep JDK 25 quiet about Maven's own use of sun.misc.Unsafe.
export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow"
if ! command -v mvn >/dev/null 2>&1; then
  echo "shrink: error: Maven (mvn) is not on the PATH; install it (apt-get install maven)." >&2
  exit 2
fi
