package dev.shrink.eval;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalLong;

/**
 * The process's resident memory from Linux's {@code /proc/self/status}: VmRSS (now) and VmHWM (the
 * peak, "high water mark"), and the reset of the peak to the current RSS by writing "5" to
 * {@code /proc/self/clear_refs}. Elsewhere (or where /proc is not writable) the values are empty.
 *
 * <p>What such a peak means for a JVM: every page the process touched, the JVM's own (code cache,
 * metaspace, thread stacks: ~100 MB) and the committed Java heap in use, not only the model. A full
 * GC before the reset (G1 then gives unused heap back) keeps earlier work out of it.
 */
public final class PeakMemory {
    private static final Path STATUS = Path.of("/proc/self/status");
    private static final Path CLEAR_REFS = Path.of("/proc/self/clear_refs");

    private PeakMemory() {
    }

    /** Sets VmHWM to the current RSS; false where that is not possible. */
    public static boolean resetPeak() {
        try {
            Files.writeString(CLEAR_REFS, "5");
            return true;
        } catch (IOException | UnsupportedOperationException | SecurityException e) {
            return false;
        }
    }

    /** Peak resident set size since the process started or the last {@link #resetPeak}, bytes. */
    public static OptionalLong peakRss() {
        return field("VmHWM:");
    }

    /** Resident set size now, bytes. */
    public static OptionalLong rss() {
        return field("VmRSS:");
    }

    private static OptionalLong field(String key) {
        try {
            for (String line : Files.readAllLines(STATUS)) {
                if (line.startsWith(key)) {
                    String[] parts = line.substring(key.length()).trim().split("\\s+");
                    return OptionalLong.of(Long.parseLong(parts[0]) * 1024); // kB
                }
            }
        } catch (IOException | RuntimeException e) {
            return OptionalLong.empty();
        }
        return OptionalLong.empty();
    }
}
