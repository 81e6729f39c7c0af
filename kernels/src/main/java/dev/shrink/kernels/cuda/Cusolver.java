package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Map;

/**
 * FFM bindings to cuSOLVER's dense API (libcusolver.so.12: CUDA 13 keeps cuSOLVER at major 12;
 * .11 and .13 are tried too): handles, and the double-precision Cholesky factorisation
 * (cusolverDnDpotrf) and inverse from it (cusolverDnDpotri), with their workspace queries. Each
 * cusolverStatus_t is checked into a {@link CudaException} naming the call. Loaded on first use
 * ({@link Cuda#cusolver()}), so a machine without it still runs everything else.
 */
final class Cusolver {
    /** cublasFillMode_t. */
    static final int FILL_LOWER = 0;
    static final int FILL_UPPER = 1;

    private static final Map<Integer, String> NAMES = Map.of(
            1, "CUSOLVER_STATUS_NOT_INITIALIZED", 2, "CUSOLVER_STATUS_ALLOC_FAILED", 3, "CUSOLVER_STATUS_INVALID_VALUE",
            4, "CUSOLVER_STATUS_ARCH_MISMATCH", 5, "CUSOLVER_STATUS_MAPPING_ERROR", 6, "CUSOLVER_STATUS_EXECUTION_FAILED",
            7, "CUSOLVER_STATUS_INTERNAL_ERROR", 8, "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED",
            9, "CUSOLVER_STATUS_NOT_SUPPORTED");

    final NativeLibrary lib;
    private final MethodHandle create, destroy, setStream, potrfSize, potrf, potriSize, potri;

    /** @throws CudaException "CUDA not available: libcusolver.so.12, ... not found" */
    Cusolver() {
        lib = NativeLibrary.open("libcusolver.so.12", "libcusolver.so.13", "libcusolver.so.11", "libcusolver.so");
        create = lib.function("cusolverDnCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        destroy = lib.function("cusolverDnDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        setStream = lib.function("cusolverDnSetStream", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        // (handle, uplo, n, A, lda, *Lwork)
        FunctionDescriptor size = FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, ADDRESS);
        // (handle, uplo, n, A, lda, work, lwork, devInfo)
        FunctionDescriptor run = FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT,
                JAVA_LONG, JAVA_INT, JAVA_LONG);
        potrfSize = lib.function("cusolverDnDpotrf_bufferSize", size);
        potrf = lib.function("cusolverDnDpotrf", run);
        potriSize = lib.function("cusolverDnDpotri_bufferSize", size);
        potri = lib.function("cusolverDnDpotri", run);
    }

    void check(int status, String call) {
        if (status != 0) {
            throw new CudaException(call + " failed: " + NAMES.getOrDefault(status, "cusolverStatus " + status));
        }
    }

    MemorySegment create(MemorySegment stream) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) create.invokeExact(p), "cusolverDnCreate");
            MemorySegment h = p.get(ADDRESS, 0);
            int s = (int) setStream.invokeExact(h, stream);
            if (s != 0) {
                int ignored = (int) destroy.invokeExact(h);
                check(s, "cusolverDnSetStream");
            }
            return h;
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cusolverDnCreate: " + t, t);
        }
    }

    void destroy(MemorySegment handle) {
        try {
            check((int) destroy.invokeExact(handle), "cusolverDnDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cusolverDnDestroy: " + t, t);
        }
    }

    /** Workspace doubles of potrf (potri: {@code inverse}) for an n×n matrix at A. */
    int bufferSize(MemorySegment handle, boolean inverse, int uplo, int n, long A) {
        String call = inverse ? "cusolverDnDpotri_bufferSize" : "cusolverDnDpotrf_bufferSize";
        try (Arena a = Arena.ofConfined()) {
            MemorySegment lwork = a.allocate(JAVA_INT);
            MethodHandle h = inverse ? potriSize : potrfSize;
            check((int) h.invokeExact(handle, uplo, n, A, n, lwork), call + "(n=" + n + ")");
            return lwork.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException(call + ": " + t, t);
        }
    }

    /** potrf (or potri with {@code inverse}) on the n×n column-major matrix at A; devInfo at info (device int). */
    void run(MemorySegment handle, boolean inverse, int uplo, int n, long A, long work, int lwork, long info) {
        String call = inverse ? "cusolverDnDpotri" : "cusolverDnDpotrf";
        try {
            MethodHandle h = inverse ? potri : potrf;
            check((int) h.invokeExact(handle, uplo, n, A, n, work, lwork, info), call + "(n=" + n + ")");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException(call + ": " + t, t);
        }
    }
}
