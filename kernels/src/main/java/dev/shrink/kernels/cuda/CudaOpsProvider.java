package dev.shrink.kernels.cuda;

import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;

/**
 * Device "cuda": {@link CudaOps} on GPU 0 (pick another with CUDA_VISIBLE_DEVICES). Ranked above
 * the CPU backends, so {@code --device auto} takes it whenever CUDA works here; it is only probed
 * (libcuda loaded, cuInit) when auto or cuda is asked for.
 */
public final class CudaOpsProvider implements OpsProvider {
    @Override
    public String device() {
        return "cuda";
    }

    @Override
    public int rank() {
        return 20;
    }

    @Override
    public boolean available() {
        return Cuda.availability().available();
    }

    @Override
    public String unavailableReason() {
        return Cuda.availability().reason();
    }

    @Override
    public String describe() {
        return Cuda.get().describe();
    }

    /** The thread count is for CPU backends; the GPU ignores it. */
    @Override
    public Ops create(int threads) {
        return CudaOps.open(0);
    }
}
