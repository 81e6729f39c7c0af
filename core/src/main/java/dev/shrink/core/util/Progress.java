package dev.shrink.core.util;

import java.io.PrintStream;
import java.util.Locale;

/**
 * A progress bar with rate and ETA on stderr for long work. On a terminal it redraws one line;
 * otherwise (CI logs, pipes) it prints a line every 10% so logs stay short. Quiet mode prints nothing.
 */
public final class Progress implements AutoCloseable {
    private final String label;
    private final long total;
    private final String unit;
    private final PrintStream out;
    private final boolean terminal;
    private final boolean quiet;
    private final long startNanos = System.nanoTime();
    private long done;
    private long lastDrawNanos;
    private int lastDecile = -1;
    private String note = "";

    public Progress(String label, long total, String unit, boolean quiet) {
        this(label, total, unit, quiet, System.err, System.console() != null && System.console().isTerminal());
    }

    Progress(String label, long total, String unit, boolean quiet, PrintStream out, boolean terminal) {
        this.label = label;
        this.total = Math.max(total, 1);
        this.unit = unit;
        this.quiet = quiet;
        this.out = out;
        this.terminal = terminal;
    }

    public void step(long n) {
        done += n;
        if (quiet) {
            return;
        }
        long now = System.nanoTime();
        if (terminal) {
            if (now - lastDrawNanos > 200_000_000L || done >= total) {
                lastDrawNanos = now;
                out.print("\r" + line());
                out.flush();
            }
        } else {
            int decile = (int) (10 * done / total);
            if (decile != lastDecile && decile < 10) {
                lastDecile = decile;
                out.println(line());
            }
        }
    }

    /** Text shown after the counts from now on (e.g. how many experts of the last block fell back); "" for none. */
    public void note(String text) {
        note = text == null || text.isEmpty() ? "" : "  " + text;
    }

    /** "label [#####.....] 50% 100/200 tokens  12.3 tokens/s  ETA 0:08". */
    String line() {
        double secs = (System.nanoTime() - startNanos) / 1e9;
        double frac = Math.min(1.0, (double) done / total);
        int width = 24;
        int filled = (int) Math.round(frac * width);
        double rate = secs > 0 ? done / secs : 0;
        String eta = rate > 0 ? clock((total - done) / rate) : "?";
        return String.format(Locale.ROOT, "%s [%s%s] %3d%% %d/%d %s  %.1f %s/s  ETA %s",
                label, "#".repeat(filled), ".".repeat(width - filled), (int) (frac * 100), done, total, unit,
                rate, unit, eta) + note;
    }

    public static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }

    public double elapsedSeconds() {
        return (System.nanoTime() - startNanos) / 1e9;
    }

    @Override
    public void close() {
        if (!quiet && terminal) {
            out.print("\r" + line() + "\n");
            out.flush();
        }
    }
}
