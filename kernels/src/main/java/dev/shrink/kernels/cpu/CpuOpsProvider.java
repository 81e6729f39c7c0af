package dev.shrink.kernels.cpu;

import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;

/** Device "cpu": {@link VectorOps}, the fast Vector API backend; always available. */
public final class CpuOpsProvider implements OpsProvider {
    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public int rank() {
        return 10;
    }

    @Override
    public boolean available() {
        return true;
    }

    @Override
    public String describe() {
        return Runtime.getRuntime().availableProcessors() + " cores, "
                + jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize() + "-bit vectors";
    }

    @Override
    public Ops create(int threads) {
        return new VectorOps(threads);
    }
}
