package dev.shrink.core.ops;

import dev.shrink.core.ShrinkException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;

/** Picks an {@link Ops} backend by device name through ServiceLoader. */
public final class Backends {
    /**
     * The most CPU threads a backend takes: far more than any machine's cores (more threads than
     * cores only slow the work down), and far below what the JVM can start.
     */
    public static final int MAX_THREADS = 1024;

    private Backends() {
    }

    /**
     * The thread count {@code --threads} asks for: 0 means all cores; 1..{@link #MAX_THREADS} as given.
     *
     * @throws ShrinkException for a negative count or one over {@link #MAX_THREADS}
     */
    public static int threads(int requested) {
        int cores = Runtime.getRuntime().availableProcessors();
        if (requested < 0 || requested > MAX_THREADS) {
            throw new ShrinkException("--threads " + requested + ": must be 0 (all " + cores + " cores) or 1 to "
                    + MAX_THREADS);
        }
        return requested > 0 ? requested : cores;
    }

    public static List<OpsProvider> providers() {
        List<OpsProvider> all = new ArrayList<>();
        ServiceLoader.load(OpsProvider.class).forEach(all::add);
        all.sort(Comparator.comparingInt(OpsProvider::rank).reversed());
        return all;
    }

    /** device: "auto" (the best available), or a provider's device name; threads as {@link #threads}. */
    public static Ops select(String device, int threads) {
        int n = threads(threads);
        List<OpsProvider> all = providers();
        if (all.isEmpty()) {
            throw new ShrinkException("no compute backend found on the class path (shrink-kernels missing?)");
        }
        if (device == null || device.equals("auto")) {
            for (OpsProvider p : all) {
                if (p.available()) {
                    return p.create(n);
                }
            }
            throw new ShrinkException("no compute backend is available here");
        }
        List<String> names = new ArrayList<>();
        for (OpsProvider p : all) {
            names.add(p.device());
            if (p.device().equals(device)) {
                if (!p.available()) {
                    throw new ShrinkException("--device " + device + ": not available here: " + p.unavailableReason());
                }
                return p.create(n);
            }
        }
        throw new ShrinkException("--device " + device + ": unknown device; known: auto, " + String.join(", ", names));
    }
}
