package dev.shrink.core.util;

import java.io.PrintWriter;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * One-line warnings ("shrink: warning: ...") from code that has no output stream of its own (the
 * model loaders), each printed once per run. The CLI points them at its stderr ({@link #sink}).
 */
public final class Warnings {
    private static volatile PrintWriter sink = new PrintWriter(System.err, true);
    private static final Set<String> SEEN = ConcurrentHashMap.newKeySet();

    private Warnings() {
    }

    /** Where warnings go from now on; forgets which were printed (a new run). */
    public static void sink(PrintWriter out) {
        sink = out;
        SEEN.clear();
    }

    /** Prints "shrink: warning: MESSAGE" unless a warning with this key was printed since {@link #sink}. */
    public static void once(String key, String message) {
        if (SEEN.add(key)) {
            sink.println("shrink: warning: " + message);
            sink.flush();
        }
    }
}
