package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/** A CUDA event on its device's stream, for GPU-side timing: record, synchronize, elapsed time. */
public final class CudaEvent implements AutoCloseable {
    private final CudaDevice device;
    private MemorySegment event;

    CudaEvent(CudaDevice device, MemorySegment event) {
        this.device = device;
        this.event = event;
    }

    /** Records the event on the device's stream (after the work queued so far). */
    public CudaEvent record() {
        device.makeCurrent();
        device.cuda.driver.eventRecord(handle(), device.stream);
        return this;
    }

    /** Waits until the work before the last record has finished. */
    public void synchronize() {
        device.cuda.driver.eventSynchronize(handle());
    }

    /** Milliseconds of GPU time from {@code start}'s record to this one's (both must have completed). */
    public float millisSince(CudaEvent start) {
        synchronize();
        return device.cuda.driver.eventElapsedMillis(start.handle(), handle());
    }

    private MemorySegment handle() {
        if (event == null) {
            throw new IllegalStateException("CUDA event used after close");
        }
        return event;
    }

    @Override
    public void close() {
        if (event != null) {
            device.makeCurrent();
            device.cuda.driver.eventDestroy(event);
            event = null;
        }
    }
}
