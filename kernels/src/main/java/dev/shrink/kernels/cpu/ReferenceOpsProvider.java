package dev.shrink.kernels.cpu;

import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;

/**
 * Device "cpu-reference": {@link ReferenceOps}, the plain-loop spec. Ranked lowest, so it is only
 * used when named; it is single-threaded whatever thread count is asked for.
 */
public final class ReferenceOpsProvider implements OpsProvider {
    @Override
    public String device() {
        return "cpu-reference";
    }

    @Override
    public int rank() {
        return 0;
    }

    @Override
    public boolean available() {
        return true;
    }

    @Override
    public String describe() {
        return "plain Java loops, one thread";
    }

    @Override
    public Ops create(int threads) {
        return new ReferenceOps();
    }
}
