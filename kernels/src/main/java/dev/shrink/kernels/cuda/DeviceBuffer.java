package dev.shrink.kernels.cuda;

/**
 * GPU memory from {@code cuMemAlloc}, freed by {@link #close()} (idempotent). Its address is
 * what kernels and cuBLAS take; using it after close is an error.
 */
public final class DeviceBuffer implements AutoCloseable {
    private final CudaDevice device;
    private final long bytes;
    private long ptr;

    DeviceBuffer(CudaDevice device, long ptr, long bytes) {
        this.device = device;
        this.ptr = ptr;
        this.bytes = bytes;
    }

    /** The device address (CUdeviceptr). */
    public long address() {
        if (ptr == 0) {
            throw new IllegalStateException("device buffer of " + bytes + " bytes used after close");
        }
        return ptr;
    }

    public long bytes() {
        return bytes;
    }

    public CudaDevice device() {
        return device;
    }

    @Override
    public void close() {
        if (ptr != 0) {
            long p = ptr;
            ptr = 0;
            device.free(p);
        }
    }
}
