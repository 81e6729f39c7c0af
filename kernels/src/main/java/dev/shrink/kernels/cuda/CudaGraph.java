package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * A CUDA graph made by capturing the work a body queues on a device's stream (kernels, copies,
 * cuBLAS calls), instantiated once and then launched as one unit: the launches inside it cost the
 * host nothing more and follow each other on the GPU without the host in between. Arguments are
 * frozen at capture (device pointers, sizes), so what changes from one launch to the next must
 * live in device memory (e.g. a decode position read by the kernels).
 */
public final class CudaGraph implements AutoCloseable {
    private final CudaDevice device;
    private MemorySegment graph, exec;

    private CudaGraph(CudaDevice device, MemorySegment graph, MemorySegment exec) {
        this.device = device;
        this.graph = graph;
        this.exec = exec;
    }

    /**
     * Captures what {@code body} queues on {@code device}'s stream (nothing runs during capture).
     *
     * @throws CudaException when a call in the body cannot be captured (the capture is ended first)
     */
    public static CudaGraph capture(CudaDevice device, Runnable body) {
        device.makeCurrent();
        Driver d = device.cuda.driver;
        d.streamBeginCapture(device.stream);
        MemorySegment g;
        try {
            body.run();
        } catch (RuntimeException e) {
            try {
                MemorySegment partial = d.streamEndCapture(device.stream);
                if (!partial.equals(MemorySegment.NULL)) {
                    d.graphDestroy(partial);
                }
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
        g = d.streamEndCapture(device.stream);
        try {
            return new CudaGraph(device, g, d.graphInstantiate(g));
        } catch (RuntimeException e) {
            d.graphDestroy(g);
            throw e;
        }
    }

    /** Queues one run of the graph on the device's stream. */
    public void launch() {
        if (exec == null) {
            throw new IllegalStateException("CUDA graph used after close");
        }
        device.makeCurrent();
        device.cuda.driver.graphLaunch(exec, device.stream);
    }

    @Override
    public void close() {
        if (exec != null) {
            device.makeCurrent();
            device.cuda.driver.graphExecDestroy(exec);
            device.cuda.driver.graphDestroy(graph);
            exec = null;
            graph = null;
        }
    }
}
