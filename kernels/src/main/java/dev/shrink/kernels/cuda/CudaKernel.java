package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One kernel of a {@link CudaModule}, launched on its device's stream (cuLaunchKernel).
 * Arguments map to C types by their Java class: {@link DeviceBuffer} → a device pointer,
 * {@code Integer} → int, {@code Long} → long long, {@code Float} → float.
 */
public final class CudaKernel {
    private final CudaDevice device;
    private final String name;
    private final MemorySegment function;
    private int dynamicSharedLimit = 48 * 1024;

    CudaKernel(CudaDevice device, String name, MemorySegment function) {
        this.device = device;
        this.name = name;
        this.function = function;
    }

    public String name() {
        return name;
    }

    /**
     * Launches grid (gx, gy) of blocks of {@code threads}, with {@code sharedBytes} of dynamic
     * shared memory (above 48 KiB the kernel is opted in to it first, up to the GPU's limit).
     */
    public void launch(int gx, int gy, int threads, int sharedBytes, Object... args) {
        launch(false, gx, gy, threads, sharedBytes, args);
    }

    /**
     * {@link #launch(int, int, int, int, Object...)}; {@code programmatic}: launched with
     * programmatic stream serialization (cuLaunchKernelEx), so that its blocks may start while the
     * previous kernel on the stream drains. Only for kernels that wait (griddepcontrol.wait) before
     * they touch what earlier work writes or reads; check {@link CudaDevice#programmaticLaunchUnsupported}.
     */
    public void launch(boolean programmatic, int gx, int gy, int threads, int sharedBytes, Object... args) {
        if (gx <= 0 || gy <= 0 || threads <= 0) {
            throw new IllegalArgumentException(name + ": empty launch grid " + gx + "x" + gy + " of " + threads);
        }
        device.makeCurrent();
        if (sharedBytes > dynamicSharedLimit) {
            if (sharedBytes > device.maxSharedMemoryPerBlock()) {
                throw new CudaException(name + ": needs " + sharedBytes + " bytes of shared memory per block; "
                        + device.name() + " allows " + device.maxSharedMemoryPerBlock());
            }
            device.cuda.driver.functionAttribute(function, Driver.FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    sharedBytes, name + " dynamic shared memory " + sharedBytes);
            dynamicSharedLimit = sharedBytes;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment params = a.allocate(ADDRESS, args.length);
            for (int i = 0; i < args.length; i++) {
                MemorySegment v = switch (args[i]) {
                    case DeviceBuffer b -> a.allocateFrom(JAVA_LONG, b.address());
                    case Integer n -> a.allocateFrom(JAVA_INT, n);
                    case Long n -> a.allocateFrom(JAVA_LONG, n);
                    case Float f -> a.allocateFrom(JAVA_FLOAT, f);
                    default -> throw new IllegalArgumentException(name + ": argument " + i + " of type "
                            + args[i].getClass().getSimpleName() + " has no C type here");
                };
                params.setAtIndex(ADDRESS, i, v);
            }
            if (programmatic) {
                device.cuda.driver.launchProgrammatic(function, name, gx, gy, 1, threads, 1, 1, sharedBytes,
                        device.stream, params);
            } else {
                device.cuda.driver.launch(function, name, gx, gy, 1, threads, 1, 1, sharedBytes, device.stream, params);
            }
        }
    }
}
