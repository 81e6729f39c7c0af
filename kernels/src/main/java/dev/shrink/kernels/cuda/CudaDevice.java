package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * One GPU: its primary context (retained while open) and one stream on which every copy, kernel
 * and cuBLAS call of this object is ordered. Copies take host memory as segments: native ones, or
 * Java arrays through {@link MemorySegment#ofArray} (see {@link Driver}'s note on why that is safe).
 * Methods make the context current on the calling thread first, so any thread may use it, one at
 * a time.
 */
public final class CudaDevice implements AutoCloseable {
    final Cuda cuda;
    final int ordinal;
    final MemorySegment stream;
    private final int dev;
    private final MemorySegment context;
    private final String name;
    private final int ccMajor, ccMinor, multiprocessors, maxSharedOptin;
    private final long totalMemory;
    private boolean closed;
    /** Bytes of the live {@link DeviceBuffer}s of this object, and the most there were at once. */
    private long allocated, peakAllocated;

    CudaDevice(Cuda cuda, int ordinal) {
        this.cuda = cuda;
        this.ordinal = ordinal;
        Driver d = cuda.driver;
        dev = d.device(ordinal);
        name = d.deviceName(dev);
        ccMajor = d.attribute(dev, Driver.ATTR_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = d.attribute(dev, Driver.ATTR_COMPUTE_CAPABILITY_MINOR);
        multiprocessors = d.attribute(dev, Driver.ATTR_MULTIPROCESSOR_COUNT);
        maxSharedOptin = d.attribute(dev, Driver.ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        totalMemory = d.totalMemory(dev);
        context = d.primaryContextRetain(dev);
        try {
            d.setCurrent(context);
            stream = d.streamCreate();
        } catch (RuntimeException e) {
            d.primaryContextRelease(dev);
            throw e;
        }
    }

    /** "NVIDIA H200". */
    public String name() {
        return name;
    }

    /** The major compute capability (9 for an H100). */
    public int computeCapabilityMajor() {
        return ccMajor;
    }

    /** The NVRTC target of this GPU, "sm_90". */
    public String arch() {
        return "sm_" + ccMajor + ccMinor;
    }

    /**
     * Why programmatic dependent launch (a kernel starting while the previous one on the stream
     * drains) cannot be used here, or null when it can: it needs compute capability 9.0+ and a
     * driver with cuLaunchKernelEx that keeps programmatic edges in stream capture (CUDA 12.3+).
     */
    public String programmaticLaunchUnsupported() {
        if (ccMajor < 9) {
            return name + " is " + arch() + " (programmatic dependent launch needs sm_90+)";
        }
        if (!cuda.driver.hasLaunchEx()) {
            return "the CUDA driver lacks cuLaunchKernelEx";
        }
        int v = cuda.driver.driverVersion();
        if (v < 12030) {
            return "CUDA driver " + v / 1000 + "." + v % 1000 / 10 + " (programmatic launch in graphs needs 12.3+)";
        }
        return null;
    }

    /** "NVIDIA H200, sm_90". */
    public String describe() {
        return name + ", " + arch();
    }

    public int multiprocessors() {
        return multiprocessors;
    }

    public long totalMemory() {
        return totalMemory;
    }

    /** Bytes of shared memory a block may opt in to (cuFuncSetAttribute). */
    public int maxSharedMemoryPerBlock() {
        return maxSharedOptin;
    }

    public Cuda cuda() {
        return cuda;
    }

    /** Makes this device's context current on the calling thread. */
    public void makeCurrent() {
        if (closed) {
            throw new IllegalStateException("CUDA device " + ordinal + " used after close");
        }
        cuda.driver.setCurrent(context);
    }

    /** Free device memory now, in bytes. */
    public long freeMemory() {
        makeCurrent();
        return cuda.driver.freeMemory();
    }

    /**
     * {@code bytes} of device memory.
     *
     * @throws CudaException (CUDA_ERROR_OUT_OF_MEMORY ...) naming the size when it cannot be had
     */
    public DeviceBuffer alloc(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("device allocation of " + bytes + " bytes");
        }
        makeCurrent();
        DeviceBuffer b = new DeviceBuffer(this, cuda.driver.memAlloc(bytes), bytes);
        synchronized (this) {
            allocated += bytes;
            peakAllocated = Math.max(peakAllocated, allocated);
        }
        return b;
    }

    void free(long ptr, long bytes) {
        synchronized (this) {
            allocated -= bytes;
        }
        if (!closed) {
            makeCurrent();
            cuda.driver.memFree(ptr);
        }
    }

    /** Bytes held now by the buffers allocated through {@link #alloc} (libraries' own workspaces not counted). */
    public synchronized long allocatedBytes() {
        return allocated;
    }

    /** The most bytes {@link #allocatedBytes()} has been since this device was opened or {@link #resetPeak()}. */
    public synchronized long peakAllocatedBytes() {
        return peakAllocated;
    }

    /** Starts a new peak measurement from what is allocated now. */
    public synchronized void resetPeak() {
        peakAllocated = allocated;
    }

    /** Device memory in use by everything on the GPU (cuMemGetInfo: total − free), bytes. */
    public long usedMemory() {
        return totalMemory - freeMemory();
    }

    /**
     * Copies {@code src} (host) to {@code dst} at byte offset {@code dstOffset}, ordered on the
     * stream. When this returns, {@code src} has been read and may be changed: from pageable
     * memory (a Java array) the driver stages the bytes before returning. (Staging them through
     * page-locked chunks here instead was measured no faster: the Java-side copy into native
     * memory, ~11 GB/s on one thread, is the limit either way; CudaBench prints both.)
     */
    public void upload(MemorySegment src, DeviceBuffer dst, long dstOffset) {
        long n = src.byteSize();
        checkRange(dst, dstOffset, n);
        if (n > 0) {
            makeCurrent();
            cuda.driver.copyHtoD(dst.address() + dstOffset, src, n, stream);
        }
    }

    /**
     * Waits for the stream, then copies {@code dst.byteSize()} bytes from {@code src} at byte
     * offset {@code srcOffset} into host memory {@code dst}; returns when dst is written.
     */
    public void download(DeviceBuffer src, long srcOffset, MemorySegment dst) {
        long n = dst.byteSize();
        checkRange(src, srcOffset, n);
        makeCurrent();
        cuda.driver.streamSynchronize(stream); // kernel errors surface here, outside the copy
        if (n > 0) {
            cuda.driver.copyDtoH(dst, src.address() + srcOffset, n, stream);
        }
    }

    /** Device-to-device copy on the stream. */
    public void copy(DeviceBuffer src, long srcOffset, DeviceBuffer dst, long dstOffset, long bytes) {
        checkRange(src, srcOffset, bytes);
        checkRange(dst, dstOffset, bytes);
        if (bytes > 0) {
            makeCurrent();
            cuda.driver.copyDtoD(dst.address() + dstOffset, src.address() + srcOffset, bytes, stream);
        }
    }

    /** Sets the first {@code words} 32-bit words of {@code dst} to {@code bits}, on the stream. */
    public void fill32(DeviceBuffer dst, int bits, long words) {
        checkRange(dst, 0, words * 4);
        if (words > 0) {
            makeCurrent();
            cuda.driver.memsetD32(dst.address(), bits, words, stream);
        }
    }

    /** Sets {@code words} 32-bit words at device address {@code dst} to {@code bits}, on the stream (unchecked). */
    public void fill32(long dst, int bits, long words) {
        if (words > 0) {
            makeCurrent();
            cuda.driver.memsetD32(dst, bits, words, stream);
        }
    }

    /** Waits until everything queued on this device's stream has finished. */
    public void synchronize() {
        makeCurrent();
        cuda.driver.streamSynchronize(stream);
    }

    /** A new event on this device. */
    public CudaEvent event() {
        makeCurrent();
        return new CudaEvent(this, cuda.driver.eventCreate(true));
    }

    /**
     * A new cuBLAS handle bound to this device's stream, owned by the caller, who closes it: each
     * handle holds its own workspace of device memory. (One created per call in AWQ's clip search and
     * never closed held ~3.8 GiB more per block of a 7B-shaped model, until the GPU ran out.) Hold one
     * for the job, or use {@link DeviceOps}'s.
     */
    public CublasHandle openCublas() {
        makeCurrent();
        return new CublasHandle(this);
    }

    /**
     * A new cuSOLVER dense handle bound to this device's stream, owned by the caller, who closes it.
     *
     * @throws CudaException when libcusolver cannot be loaded
     */
    public CusolverHandle openCusolver() {
        makeCurrent();
        return new CusolverHandle(this);
    }

    /**
     * The kernels of resource {@code dev/shrink/kernels/cuda/NAME} (a .cu file) compiled for this
     * GPU, through the on-disk cubin cache ({@link CubinCache}).
     */
    public CudaModule module(String name) {
        makeCurrent();
        return CubinCache.load(this, name);
    }

    private static void checkRange(DeviceBuffer b, long offset, long n) {
        if (offset < 0 || n < 0 || offset + n > b.bytes()) {
            throw new IllegalArgumentException("device copy of " + n + " bytes at offset " + offset
                    + " outside a buffer of " + b.bytes() + " bytes");
        }
    }

    /** Destroys the stream and releases the primary context (buffers must be closed first). */
    @Override
    public void close() {
        if (!closed) {
            makeCurrent();
            try {
                cuda.driver.streamSynchronize(stream);
                cuda.driver.streamDestroy(stream);
            } finally {
                closed = true;
                cuda.driver.primaryContextRelease(dev);
            }
        }
    }
}
