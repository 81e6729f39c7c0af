package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * The forward-pass ops on tensors that stay on the GPU: the device-buffer twins of {@link CudaOps}'
 * heap-array ops (gemm, rmsNorm, rope, attention, swiglu) plus what a block loop needs besides
 * (embedding gather, bias, a NaN/Inf check). Arguments are device addresses of row-major float32
 * tensors ({@link DeviceBuffer#floatAt}); every call is queued on the device's stream and returns
 * at once, except where it says it waits. Made by {@link CudaOps#deviceOps()}, sharing its device,
 * cuBLAS handle and kernels.
 *
 * <p>Dimension letters: M rows (B sequences × T tokens), C hidden, H query heads, Hkv key/value
 * heads, D head dim, N output columns, K inner dimension.
 *
 * <p>GEMMs run in {@link #math()}: float32 ({@link GemmMath#FP32}, what the CPU computes to
 * rounding) or TF32 tensor-core products ({@link GemmMath#TF32}).
 */
public final class DeviceOps implements AutoCloseable {
    private final CudaOps owner;
    private final CudaDevice device;
    private final CublasHandle blas;
    private final CudaModule module;
    private final CudaKernel rmsNorm, swiglu, embed, rope, addBias, softmax, nonFinite, stall;
    private DeviceBuffer flag;

    DeviceOps(CudaOps owner, CudaDevice device, CublasHandle blas, CudaModule ops) {
        this.owner = owner;
        this.device = device;
        this.blas = blas;
        rmsNorm = ops.kernel("rms_norm");
        swiglu = ops.kernel("swiglu");
        module = device.module("device.cu");
        embed = module.kernel("embed_gather");
        rope = module.kernel("rope_seq");
        addBias = module.kernel("add_bias");
        softmax = module.kernel("causal_softmax");
        nonFinite = module.kernel("any_nonfinite");
        stall = module.kernel("stall_ns");
    }

    public CudaDevice device() {
        return device;
    }

    /** The arithmetic of this object's GEMMs (its {@link CudaOps}'s setting). */
    public GemmMath math() {
        return owner.math();
    }

    // ---------------------------------------------------------------- copies

    /** Copies src[off .. off+n) to dst's floats from {@code dstIndex}. */
    public void upload(float[] src, int off, int n, DeviceBuffer dst, long dstIndex) {
        device.upload(MemorySegment.ofArray(src).asSlice(off * 4L, n * 4L), dst, dstIndex * 4);
    }

    /** Copies all of src to the start of dst. */
    public void upload(float[] src, DeviceBuffer dst) {
        upload(src, 0, src.length, dst, 0);
    }

    /** Copies ints to dst's elements from {@code dstIndex}. */
    public void upload(int[] src, DeviceBuffer dst, long dstIndex) {
        device.upload(MemorySegment.ofArray(src), dst, dstIndex * 4);
    }

    /** Waits for the stream, then copies n floats from src's element {@code srcIndex}. */
    public float[] downloadFloats(DeviceBuffer src, long srcIndex, int n) {
        float[] out = new float[n];
        device.download(src, srcIndex * 4, MemorySegment.ofArray(out));
        return out;
    }

    // ---------------------------------------------------------------- GEMM

    /** C = alpha · op(A) · op(B) + beta · C on row-major device matrices, in {@link #math()}; see {@link CublasHandle#sgemmRowMajor}. */
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, int lda, long B,
                     int ldb, float beta, long C, int ldc) {
        gemm(math(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }

    /** {@link #gemm} in the given arithmetic. */
    public void gemm(GemmMath m, boolean transA, boolean transB, int M, int N, int K, float alpha, long A, int lda,
                     long B, int ldb, float beta, long C, int ldc) {
        if (M == 0 || N == 0 || K == 0) {
            throw new IllegalArgumentException("empty device gemm " + M + "x" + N + "x" + K);
        }
        if (m == GemmMath.FP32) {
            blas.sgemmRowMajor(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        } else {
            blas.gemmRowMajor(m, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        }
    }

    /**
     * {@code batch} GEMMs C_i = alpha · op(A_i) · op(B_i) + beta · C_i on row-major device matrices
     * {@code stride} elements apart, in {@link #math()}, on this object's cuBLAS handle; see
     * {@link CublasHandle#gemmStridedBatchedRowMajor}.
     */
    public void gemmStridedBatched(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, int lda,
                                   long strideA, long B, int ldb, long strideB, float beta, long C, int ldc, long strideC,
                                   int batch) {
        blas.gemmStridedBatchedRowMajor(math(), transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                ldc, strideC, batch);
    }

    /** A linear layer: y[M, N] = x[M, K] · Wᵀ + beta · y, W: [N, K] (beta 1 adds into a residual stream). */
    public void linear(long x, int M, int K, long W, int N, long y, float beta) {
        gemm(false, true, M, N, K, 1f, x, K, W, K, beta, y, N);
    }

    // ---------------------------------------------------------------- elementwise and row ops

    /** y = RMSNorm(x)·weight per row; x, y: [M, C] (y may be x); as {@link CudaOps#rmsNorm}. */
    public void rmsNorm(long x, long weight, float eps, int M, int C, long y) {
        rmsNorm.launch(M, 1, rowThreads(C), 0, x, weight, y, C, eps);
    }

    /** out[i] = silu(gate[i]) · up[i] for n elements; out may be gate. */
    public void swiglu(long gate, long up, long n, long out) {
        swiglu.launch(blocks(n, 256), 1, 256, 0, gate, up, out, n);
    }

    /** x[m, :] = E[ids[m], :]; E: [V, C], ids: int32 [M] (each in 0..V−1: the caller checks), x: [M, C]. */
    public void embed(long E, long ids, long M, int C, long x) {
        embed.launch(blocks(M * C, 256), 1, 256, 0, E, ids, x, M, C);
    }

    /**
     * Rotate-half RoPE in place on x: [rows, heads, D], row r being token r % T of a sequence that
     * starts at position 0; cos, sin: [T, D/2] (the tables' first T rows).
     */
    public void ropeSequences(long x, long rows, int heads, int D, int T, long cos, long sin) {
        rope.launch(blocks(rows * heads * (D / 2), 256), 1, 256, 0, x, cos, sin, rows, heads, D, T);
    }

    /** y[m, :] += b for y: [M, N], b: [N]. */
    public void addBias(long y, long b, long M, int N) {
        addBias.launch(blocks(M * N, 256), 1, 256, 0, y, b, M, N);
    }

    // ---------------------------------------------------------------- attention

    /** Floats of the score scratch {@link #attention} needs: H·T·T. */
    public static long attentionScratch(int T, int H) {
        return (long) H * T * T;
    }

    /**
     * Causal self-attention of B independent sequences of T tokens (each from position 0) with
     * grouped KV heads. q, out: [B·T, H, D]; k, v: [B·T, Hkv, D]; scores: at least
     * {@link #attentionScratch} floats. Per sequence: S = q·kᵀ/√D for all heads (cuBLAS strided
     * batched over the KV heads, once per query head of a group), a causal softmax in place, then
     * out = P·v (batched the same way): the [T, T] scores are materialised, which at T ≤ a few
     * thousand costs less than the tensor-core GEMMs save.
     */
    public void attention(long q, long k, long v, int B, int T, int H, int Hkv, int D, long out,
                          DeviceBuffer scores) {
        if (scores.bytes() < attentionScratch(T, H) * 4) {
            throw new IllegalArgumentException("attention scratch of " + scores.bytes() + " bytes; needs "
                    + attentionScratch(T, H) * 4);
        }
        int g = H / Hkv, qDim = H * D, kvDim = Hkv * D;
        float scale = (float) (1.0 / Math.sqrt(D));
        long S = scores.address();
        long TT = (long) T * T;
        for (int b = 0; b < B; b++) {
            long qb = q + 4L * b * T * qDim, kb = k + 4L * b * T * kvDim, vb = v + 4L * b * T * kvDim;
            long ob = out + 4L * b * T * qDim;
            for (int r = 0; r < g; r++) {
                // heads h = j·g + r for kv heads j: S_h[T, T] = scale · Q_h · K_jᵀ
                blas.gemmStridedBatchedRowMajor(math(), false, true, T, T, D, scale,
                        qb + 4L * r * D, qDim, (long) g * D, kb, kvDim, D, 0f, S + 4L * r * TT, T, g * TT, Hkv);
            }
            softmax.launch(H * T, 1, Math.min(1024, Math.max(32, (T + 31) / 32 * 32)), 0, S, T);
            for (int r = 0; r < g; r++) {
                // O_h[T, D] = P_h · V_j, written into out's head-h columns
                blas.gemmStridedBatchedRowMajor(math(), false, false, T, D, T, 1f,
                        S + 4L * r * TT, T, g * TT, vb, kvDim, D, 0f, ob + 4L * r * D, qDim, (long) g * D, Hkv);
            }
        }
    }

    // ---------------------------------------------------------------- checks

    /** Waits for the stream: whether any of x[0..n) is NaN or Inf. */
    public boolean anyNonFinite(long x, long n) {
        if (flag == null) {
            flag = device.alloc(4);
        }
        device.fill32(flag, 0, 1);
        nonFinite.launch(blocks(n, 256), 1, 256, 0, x, n, flag);
        int[] f = new int[1];
        device.download(flag, 0, MemorySegment.ofArray(f));
        return f[0] != 0;
    }

    /**
     * Queues a kernel that holds the stream for {@code nanos}: for benchmarks, so that the work
     * queued behind it is launched before it runs and CUDA events time the GPU, not the host's
     * launch rate.
     */
    public void stall(long nanos) {
        stall.launch(1, 1, 32, 0, nanos);
    }

    static int rowThreads(int C) {
        return Math.min(1024, Math.max(32, (C + 31) / 32 * 32));
    }

    static int blocks(long n, int threads) {
        return (int) Math.max(1, Math.min(1L << 20, (n + threads - 1) / threads));
    }

    /** Frees this object's own kernels and buffer (the device, cuBLAS handle and ops.cu belong to the CudaOps). */
    @Override
    public void close() {
        if (flag != null) {
            flag.close();
            flag = null;
        }
        module.close();
    }
}
