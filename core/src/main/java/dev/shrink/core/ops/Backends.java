package dev.shrink.core.ops;

import dev.shrink.core.ShrinkException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;

/** Picks an {@link Ops} backend by device name through ServiceLoader. */
public final class Backends {
    private Backends() {
    }

    public static List<OpsProvider> providers() {
        List<OpsProvider> all = new ArrayList<>();
        ServiceLoader.load(OpsProvider.class).forEach(all::add);
        all.sort(Comparator.comparingInt(OpsProvider::rank).reversed());
        return all;
    }

    /** device: "auto" (the best available), or a provider's device name. threads ≤ 0: all cores. */
    public static Ops select(String device, int threads) {
        int n = threads > 0 ? threads : Runtime.getRuntime().availableProcessors();
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
