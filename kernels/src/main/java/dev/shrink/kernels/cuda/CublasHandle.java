package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A cuBLAS handle on its device's stream, in true float32 math (CUBLAS_DEFAULT_MATH, no TF32).
 */
public final class CublasHandle implements AutoCloseable {
    private final CudaDevice device;
    private MemorySegment handle;
    /** alpha and beta of the calls, host memory owned by this handle (a handle is used by one thread at a time). */
    private final Arena arena = Arena.ofShared();
    private final MemorySegment scalars = arena.allocate(JAVA_FLOAT, 2);

    CublasHandle(CudaDevice device) {
        this.device = device;
        Cublas b = device.cuda.cublas;
        MemorySegment h = b.create();
        try {
            b.setStream(h, device.stream);
        } catch (RuntimeException e) {
            b.destroy(h);
            throw e;
        }
        handle = h;
    }

    /** cuBLAS's version, e.g. 130100 for 13.1.0. */
    public int version() {
        device.makeCurrent();
        return device.cuda.cublas.version(live());
    }

    /**
     * C = alpha · op(A) · op(B) + beta · C on ROW-major device matrices, with Ops' conventions:
     * op(A): [M, K] (A stored [M, K] with row stride lda, or [K, M] when transA), op(B): [K, N]
     * (B stored [K, N] or [N, K]), C: [M, N] with row stride ldc; addresses are device pointers.
     *
     * <p>cuBLAS is column-major, and a row-major [R, S] matrix with stride ld is the column-major
     * [S, R] matrix (its transpose) with the same ld. So row-major C = op(A)·op(B) is computed as
     * column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap places and keep their transpose flags,
     * m = N, n = M.
     */
    public void sgemmRowMajor(boolean transA, boolean transB, int M, int N, int K, float alpha,
                              long A, int lda, long B, int ldb, float beta, long C, int ldc) {
        device.makeCurrent();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment scalars = a.allocate(JAVA_FLOAT, 2);
            scalars.setAtIndex(JAVA_FLOAT, 0, alpha);
            scalars.setAtIndex(JAVA_FLOAT, 1, beta);
            device.cuda.cublas.sgemm(live(), transB ? Cublas.OP_T : Cublas.OP_N, transA ? Cublas.OP_T : Cublas.OP_N,
                    N, M, K, scalars, B, ldb, A, lda, C, ldc);
        }
    }

    /**
     * {@link #sgemmRowMajor} through cublasGemmEx with the arithmetic {@code math} (float32 data
     * either way); the same row-major to column-major operand swap.
     */
    public void gemmRowMajor(GemmMath math, boolean transA, boolean transB, int M, int N, int K, float alpha,
                             long A, int lda, long B, int ldb, float beta, long C, int ldc) {
        device.makeCurrent();
        setScalars(alpha, beta);
        device.cuda.cublas.gemmEx(live(), transB ? Cublas.OP_T : Cublas.OP_N, transA ? Cublas.OP_T : Cublas.OP_N,
                N, M, K, scalars, B, ldb, A, lda, C, ldc, math.computeType);
    }

    /**
     * {@link #gemmRowMajor}'s product with fp16 A and B and a float32 C, float32 arithmetic
     * (CUBLAS_COMPUTE_32F: fp16 products exact, float32 sums): the fp16-weight linear layer.
     */
    public void gemmRowMajorF16(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, int lda,
                                long B, int ldb, float beta, long C, int ldc) {
        device.makeCurrent();
        setScalars(alpha, beta);
        device.cuda.cublas.gemmEx(live(), transB ? Cublas.OP_T : Cublas.OP_N, transA ? Cublas.OP_T : Cublas.OP_N,
                N, M, K, scalars, B, Cublas.R_16F, ldb, A, Cublas.R_16F, lda, C, Cublas.R_32F, ldc, Cublas.COMPUTE_32F);
    }

    /**
     * {@code batch} independent row-major products C_i = alpha · op(A_i) · op(B_i) + beta · C_i with
     * A_i = A + i·strideA (elements), and so on: {@link #gemmRowMajor}'s conventions per item.
     */
    public void gemmStridedBatchedRowMajor(GemmMath math, boolean transA, boolean transB, int M, int N, int K,
                                           float alpha, long A, int lda, long strideA, long B, int ldb, long strideB,
                                           float beta, long C, int ldc, long strideC, int batch) {
        device.makeCurrent();
        setScalars(alpha, beta);
        device.cuda.cublas.gemmStridedBatchedEx(live(), transB ? Cublas.OP_T : Cublas.OP_N,
                transA ? Cublas.OP_T : Cublas.OP_N, N, M, K, scalars, B, ldb, strideB, A, lda, strideA, C, ldc,
                strideC, batch, math.computeType);
    }

    private void setScalars(float alpha, float beta) {
        scalars.setAtIndex(JAVA_FLOAT, 0, alpha);
        scalars.setAtIndex(JAVA_FLOAT, 1, beta);
    }

    private MemorySegment live() {
        if (handle == null) {
            throw new IllegalStateException("cuBLAS handle used after close");
        }
        return handle;
    }

    @Override
    public void close() {
        if (handle != null) {
            device.makeCurrent();
            device.cuda.cublas.destroy(handle);
            handle = null;
            arena.close();
        }
    }
}
