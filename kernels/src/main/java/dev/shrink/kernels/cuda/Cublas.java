package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Map;
import java.util.Optional;

/**
 * FFM bindings to cuBLAS (libcublas.so.13, .12, .11): handles and single-precision GEMM. Each
 * cublasStatus_t is checked into a {@link CudaException} naming the call and the status.
 * Row-major callers go through {@link CublasHandle#sgemmRowMajor}.
 */
final class Cublas {
    static final int OP_N = 0;
    static final int OP_T = 1;
    /** CUBLAS_DEFAULT_MATH: true float32 (no TF32 unless NVIDIA_TF32_OVERRIDE=1 is set). */
    static final int DEFAULT_MATH = 0;

    private static final Map<Integer, String> NAMES = Map.of(
            1, "CUBLAS_STATUS_NOT_INITIALIZED", 3, "CUBLAS_STATUS_ALLOC_FAILED", 7, "CUBLAS_STATUS_INVALID_VALUE",
            8, "CUBLAS_STATUS_ARCH_MISMATCH", 11, "CUBLAS_STATUS_MAPPING_ERROR", 13, "CUBLAS_STATUS_EXECUTION_FAILED",
            14, "CUBLAS_STATUS_INTERNAL_ERROR", 15, "CUBLAS_STATUS_NOT_SUPPORTED", 16, "CUBLAS_STATUS_LICENSE_ERROR");

    final NativeLibrary lib;
    /** cudaDataType CUDA_R_32F; cublasComputeType_t CUBLAS_COMPUTE_32F and CUBLAS_COMPUTE_32F_FAST_TF32. */
    static final int R_32F = 0;
    /** cudaDataType CUDA_R_16F. */
    static final int R_16F = 2;
    static final int COMPUTE_32F = 68;
    static final int COMPUTE_32F_FAST_TF32 = 77;
    /** cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT. */
    static final int GEMM_DEFAULT = -1;

    private final MethodHandle create, destroy, setStream, setMathMode, getVersion, sgemm, gemmEx, gemmBatchedEx;
    private final Optional<MethodHandle> statusString;

    /** @throws CudaException "CUDA not available: libcublas.so.13, ... not found" */
    Cublas() {
        lib = NativeLibrary.open("libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so");
        create = lib.function("cublasCreate_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        destroy = lib.function("cublasDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        setStream = lib.function("cublasSetStream_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        setMathMode = lib.function("cublasSetMathMode", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        getVersion = lib.function("cublasGetVersion_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        // cublasSgemm_v2(handle, transa, transb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc)
        sgemm = lib.function("cublasSgemm_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, ADDRESS,
                JAVA_LONG, JAVA_INT));
        // cublasGemmEx(handle, transa, transb, m, n, k, *alpha, A, Atype, lda, B, Btype, ldb, *beta, C, Ctype, ldc,
        //             computeType, algo)
        gemmEx = lib.function("cublasGemmEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT,
                ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
        // cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, *alpha, A, Atype, lda, strideA, B, Btype, ldb,
        //             strideB, *beta, C, Ctype, ldc, strideC, batchCount, computeType, algo)
        gemmBatchedEx = lib.function("cublasGemmStridedBatchedEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG,
                JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT,
                JAVA_INT));
        statusString = lib.optionalFunction("cublasGetStatusString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    void check(int status, String call) {
        if (status != 0) {
            String text = null;
            if (statusString.isPresent()) {
                try {
                    text = NativeLibrary.string((MemorySegment) statusString.get().invokeExact(status), null);
                } catch (Throwable t) {
                    text = null;
                }
            }
            String name = NAMES.getOrDefault(status, "cublasStatus " + status);
            throw new CudaException(call + " failed: " + name + (text != null ? " (" + text + ")" : ""));
        }
    }

    MemorySegment create() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) create.invokeExact(p), "cublasCreate_v2");
            MemorySegment h = p.get(ADDRESS, 0);
            check((int) setMathMode.invokeExact(h, DEFAULT_MATH), "cublasSetMathMode");
            return h;
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasCreate_v2: " + t, t);
        }
    }

    void destroy(MemorySegment handle) {
        try {
            check((int) destroy.invokeExact(handle), "cublasDestroy_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasDestroy_v2: " + t, t);
        }
    }

    void setStream(MemorySegment handle, MemorySegment stream) {
        try {
            check((int) setStream.invokeExact(handle, stream), "cublasSetStream_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasSetStream_v2: " + t, t);
        }
    }

    int version(MemorySegment handle) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) getVersion.invokeExact(handle, v), "cublasGetVersion_v2");
            return v.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasGetVersion_v2: " + t, t);
        }
    }

    /** Column-major cublasSgemm_v2 with host alpha/beta (scalars is two floats: alpha, beta). */
    void sgemm(MemorySegment handle, int transa, int transb, int m, int n, int k, MemorySegment scalars,
               long A, int lda, long B, int ldb, long C, int ldc) {
        try {
            MemorySegment alpha = scalars.asSlice(0, 4), beta = scalars.asSlice(4, 4);
            int s = (int) sgemm.invokeExact(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            if (s != 0) {
                check(s, "cublasSgemm_v2(" + (transa == OP_T ? "T" : "N") + (transb == OP_T ? "T" : "N")
                        + ", m=" + m + " n=" + n + " k=" + k + ", lda=" + lda + " ldb=" + ldb + " ldc=" + ldc + ")");
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasSgemm_v2: " + t, t);
        }
    }

    /**
     * Column-major float32 cublasGemmEx with {@code computeType} ({@link #COMPUTE_32F} or
     * {@link #COMPUTE_32F_FAST_TF32}); scalars holds alpha and beta as two host floats.
     */
    void gemmEx(MemorySegment handle, int transa, int transb, int m, int n, int k, MemorySegment scalars,
                long A, int lda, long B, int ldb, long C, int ldc, int computeType) {
        gemmEx(handle, transa, transb, m, n, k, scalars, A, R_32F, lda, B, R_32F, ldb, C, R_32F, ldc, computeType);
    }

    /** Column-major cublasGemmEx with the operands' data types given (e.g. {@link #R_16F} A and B, float32 C). */
    void gemmEx(MemorySegment handle, int transa, int transb, int m, int n, int k, MemorySegment scalars,
                long A, int aType, int lda, long B, int bType, int ldb, long C, int cType, int ldc, int computeType) {
        try {
            MemorySegment alpha = scalars.asSlice(0, 4), beta = scalars.asSlice(4, 4);
            int s = (int) gemmEx.invokeExact(handle, transa, transb, m, n, k, alpha, A, aType, lda, B, bType, ldb,
                    beta, C, cType, ldc, computeType, GEMM_DEFAULT);
            if (s != 0) {
                check(s, "cublasGemmEx(" + (transa == OP_T ? "T" : "N") + (transb == OP_T ? "T" : "N")
                        + ", m=" + m + " n=" + n + " k=" + k + ", lda=" + lda + " ldb=" + ldb + " ldc=" + ldc
                        + ", types " + aType + "/" + bType + "/" + cType + ", compute " + computeType + ")");
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasGemmEx: " + t, t);
        }
    }

    /** Column-major float32 cublasGemmStridedBatchedEx; strides in elements. */
    void gemmStridedBatchedEx(MemorySegment handle, int transa, int transb, int m, int n, int k,
                              MemorySegment scalars, long A, int lda, long strideA, long B, int ldb, long strideB,
                              long C, int ldc, long strideC, int batch, int computeType) {
        try {
            MemorySegment alpha = scalars.asSlice(0, 4), beta = scalars.asSlice(4, 4);
            int s = (int) gemmBatchedEx.invokeExact(handle, transa, transb, m, n, k, alpha, A, R_32F, lda, strideA,
                    B, R_32F, ldb, strideB, beta, C, R_32F, ldc, strideC, batch, computeType, GEMM_DEFAULT);
            if (s != 0) {
                check(s, "cublasGemmStridedBatchedEx(" + (transa == OP_T ? "T" : "N") + (transb == OP_T ? "T" : "N")
                        + ", m=" + m + " n=" + n + " k=" + k + ", batch " + batch + ")");
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasGemmStridedBatchedEx: " + t, t);
        }
    }
}
