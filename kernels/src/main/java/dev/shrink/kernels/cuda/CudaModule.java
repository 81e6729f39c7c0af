package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * A loaded cubin (cuModuleLoadData) and the kernels in it. {@link #fromCache()} and
 * {@link #compileMillis()} tell how it was obtained.
 */
public final class CudaModule implements AutoCloseable {
    private final CudaDevice device;
    private final String name;
    private final boolean fromCache;
    private final double compileMillis;
    private MemorySegment module;

    CudaModule(CudaDevice device, String name, MemorySegment module, boolean fromCache, double compileMillis) {
        this.device = device;
        this.name = name;
        this.module = module;
        this.fromCache = fromCache;
        this.compileMillis = compileMillis;
    }

    /** The kernel {@code extern "C"} named {@code kernel}. */
    public CudaKernel kernel(String kernel) {
        if (module == null) {
            throw new IllegalStateException("module " + name + " used after close");
        }
        device.makeCurrent();
        return new CudaKernel(device, kernel, device.cuda.driver.moduleFunction(module, kernel));
    }

    public String name() {
        return name;
    }

    /** Whether the cubin came from the disk cache (no NVRTC compile this time). */
    public boolean fromCache() {
        return fromCache;
    }

    /** Milliseconds NVRTC took, 0 when cached. */
    public double compileMillis() {
        return compileMillis;
    }

    @Override
    public void close() {
        if (module != null) {
            device.makeCurrent();
            device.cuda.driver.moduleUnload(module);
            module = null;
        }
    }
}
