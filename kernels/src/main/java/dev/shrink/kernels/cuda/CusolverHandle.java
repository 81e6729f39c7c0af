package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * A cuSOLVER dense handle on its device's stream: the double-precision Cholesky factorisation
 * and the inverse from it, on n×n matrices in device memory. A symmetric matrix reads the same in
 * row- and column-major order; the triangles are named here in column-major terms, as cuSOLVER
 * names them (column-major "lower" is row-major "upper").
 */
public final class CusolverHandle implements AutoCloseable {
    private final CudaDevice device;
    private final Cusolver lib;
    private MemorySegment handle;
    private DeviceBuffer work;

    CusolverHandle(CudaDevice device) {
        this.device = device;
        this.lib = device.cuda.cusolver();
        device.makeCurrent();
        this.handle = lib.create(device.stream);
    }

    /**
     * In place, queued on the stream: A = L·Lᵀ with L lower triangular in column-major order
     * (cusolverDnDpotrf, uplo lower). {@code info} (a device int) receives 0, or j &gt; 0 when the
     * leading minor of order j is not positive definite.
     */
    public void potrfLower(DeviceBuffer A, int n, DeviceBuffer info) {
        call(false, A, n, info);
    }

    /**
     * In place, after {@link #potrfLower}: the lower triangle (column-major) of A becomes that of
     * A⁻¹ (cusolverDnDpotri); the other triangle is left as it was.
     */
    public void potriLower(DeviceBuffer A, int n, DeviceBuffer info) {
        call(true, A, n, info);
    }

    private void call(boolean inverse, DeviceBuffer A, int n, DeviceBuffer info) {
        if (A.bytes() < (long) n * n * 8) {
            throw new IllegalArgumentException("a " + n + "×" + n + " double matrix needs " + (long) n * n * 8
                    + " bytes; the buffer has " + A.bytes());
        }
        device.makeCurrent();
        int lwork = Math.max(1, lib.bufferSize(live(), inverse, Cusolver.FILL_LOWER, n, A.address()));
        if (work == null || work.bytes() < lwork * 8L) {
            if (work != null) {
                device.synchronize(); // queued work may still use the old workspace
                work.close();
                work = null;
            }
            work = device.alloc(lwork * 8L);
        }
        lib.run(live(), inverse, Cusolver.FILL_LOWER, n, A.address(), work.address(), lwork, info.address());
    }

    private MemorySegment live() {
        if (handle == null) {
            throw new IllegalStateException("cuSOLVER handle used after close");
        }
        return handle;
    }

    @Override
    public void close() {
        if (handle != null) {
            device.makeCurrent();
            device.synchronize();
            if (work != null) {
                work.close();
                work = null;
            }
            lib.destroy(handle);
            handle = null;
        }
    }
}
