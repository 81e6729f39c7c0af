package dev.shrink.kernels.cuda;

import dev.shrink.core.ShrinkException;

/**
 * A failed CUDA driver, NVRTC or cuBLAS call (the message names the call and the library's own
 * error name and text), or CUDA missing altogether ("CUDA not available: libcuda.so.1 not found").
 * A {@link ShrinkException}, so the CLI prints it as one line.
 */
public final class CudaException extends ShrinkException {
    public CudaException(String message) {
        super(message);
    }

    public CudaException(String message, Throwable cause) {
        super(message, cause);
    }
}
