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

    /** The device address of float (or int) element {@code index}: address() + 4·index, checked against the size. */
    public long floatAt(long index) {
        if (index < 0 || index * 4 > bytes) {
            throw new IndexOutOfBoundsException("element " + index + " of a device buffer of " + bytes / 4 + " floats");
        }
        return address() + index * 4;
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
            device.free(p, bytes);
        }
    }
}
