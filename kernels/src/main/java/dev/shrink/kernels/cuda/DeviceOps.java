package dev.shrink.kernels.cuda;

import dev.shrink.core.forward.KvCacheType;
import java.lang.foreign.MemorySegment;

/**
 * The forward-pass ops on tensors that stay on the GPU: the device-buffer twins of {@link CudaOps}'
 * heap-array ops (gemm, rmsNorm, rope, attention with an optional sliding window, swiglu,
 * crossEntropy) plus what a block loop needs besides (embedding gather, bias, residual add, column
 * copies, fp16 conversion, the KV-cache quantization round trip, GPTQ dequantization, a NaN/Inf
 * check). Arguments are device addresses of row-major float32 tensors ({@link DeviceBuffer#floatAt})
 * unless a method says otherwise; every call is queued on the device's stream and returns at once,
 * except where it says it waits. Sizes are not checked against the buffers (the addresses carry no
 * size): the caller's tensors must hold what the shapes say. Kernels index in 64 bits. Made by {@link CudaOps#deviceOps()}, sharing its device,
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
    private final CudaKernel rmsNorm, swiglu, geglu, crossEntropy, embed, rope, addBias, softmax, nonFinite, stall;
    private final CudaKernel toHalf, add, copyRows, kvRoundTrip, dequantGptq, scaleKernel, softcapKernel;
    private final CudaKernel gatherRows, addScaledRows;
    private DeviceBuffer flag;
    private CudaModule flash; // flash.cu, compiled on first use
    private final java.util.Map<Integer, CudaKernel> flashKernels = new java.util.HashMap<>(); // by head dim

    DeviceOps(CudaOps owner, CudaDevice device, CublasHandle blas, CudaModule ops) {
        this.owner = owner;
        this.device = device;
        this.blas = blas;
        rmsNorm = ops.kernel("rms_norm");
        swiglu = ops.kernel("swiglu");
        geglu = ops.kernel("geglu");
        crossEntropy = ops.kernel("cross_entropy");
        module = device.module("device.cu");
        embed = module.kernel("embed_gather");
        rope = module.kernel("rope_seq");
        addBias = module.kernel("add_bias");
        softmax = module.kernel("causal_softmax");
        nonFinite = module.kernel("any_nonfinite");
        stall = module.kernel("stall_ns");
        toHalf = module.kernel("to_half");
        add = module.kernel("add_into");
        copyRows = module.kernel("copy_rows");
        kvRoundTrip = module.kernel("kv_round_trip");
        dequantGptq = module.kernel("dequant_gptq");
        scaleKernel = module.kernel("scale_into");
        softcapKernel = module.kernel("softcap_into");
        gatherRows = module.kernel("gather_rows");
        addScaledRows = module.kernel("add_scaled_rows");
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

    /**
     * A float sub-matrix copy on the device: dst[r, dstCol0 + c] = src[r, srcCol0 + c] for r &lt; rows,
     * c &lt; width, where row r of src starts at element r·srcLd and of dst at r·dstLd (e.g. q, k, v
     * out of a fused q|k|v projection, or a head's columns). src and dst must not overlap.
     */
    public void copyRows(long src, int srcLd, int srcCol0, long dst, int dstLd, int dstCol0, int rows, int width) {
        if (rows < 0 || width < 0 || srcCol0 < 0 || dstCol0 < 0 || (long) srcCol0 + width > srcLd
                || (long) dstCol0 + width > dstLd) {
            throw new IllegalArgumentException("copyRows: " + rows + " rows of " + width + " columns from column "
                    + srcCol0 + " of rows of " + srcLd + " to column " + dstCol0 + " of rows of " + dstLd);
        }
        if (rows == 0 || width == 0) {
            return;
        }
        copyRows.launch(blocks((long) rows * width, 256), 1, 256, 0, src, srcLd, srcCol0, dst, dstLd, dstCol0,
                (long) rows, width);
    }

    /**
     * dst[i, :] = src[rows[i], :] for i &lt; n: the rows routed to one expert of a mixture. rows: device
     * int32 [n], each a row of src (the caller checks); src: [*, C]; dst: [n, C].
     */
    public void gatherRows(long src, long rows, long n, int C, long dst) {
        if (n < 0 || C < 0) {
            throw new IllegalArgumentException("gatherRows: n = " + n + ", C = " + C);
        }
        if (n > 0 && C > 0) {
            gatherRows.launch(blocks(n * C, 256), 1, 256, 0, src, rows, dst, n, C);
        }
    }

    /**
     * out[rows[i], :] += w[i] · y[i, :] for i &lt; n, the product rounded to float before the add (as
     * transformers' {@code y * w} then {@code index_add_}; no fused multiply-add): an expert's output added
     * into a mixture's. rows: device int32 [n], distinct rows of out (the caller checks); w: float32 [n];
     * y: [n, C]; out: [*, C].
     */
    public void addScaledRows(long y, long rows, long w, long n, int C, long out) {
        if (n < 0 || C < 0) {
            throw new IllegalArgumentException("addScaledRows: n = " + n + ", C = " + C);
        }
        if (n > 0 && C > 0) {
            addScaledRows.launch(blocks(n * C, 256), 1, 256, 0, y, rows, w, out, n, C);
        }
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

    /** out[i] = gelu_tanh(gate[i]) · up[i] for n elements (GeGLU, {@code Ops.geglu}); out may be gate. */
    public void geglu(long gate, long up, long n, long out) {
        geglu.launch(blocks(n, 256), 1, 256, 0, gate, up, out, n);
    }

    /** x[i] *= s for i &lt; n. */
    public void scale(long x, float s, long n) {
        checkCount("scale", n);
        if (n > 0) {
            scaleKernel.launch(blocks(n, 256), 1, 256, 0, x, s, n);
        }
    }

    /** x[i] = cap · tanh(x[i] / cap) for i &lt; n, cap &gt; 0. */
    public void softcap(long x, float cap, long n) {
        checkCount("softcap", n);
        if (n > 0) {
            softcapKernel.launch(blocks(n, 256), 1, 256, 0, x, cap, n);
        }
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

    /** x[i] += d[i] for i &lt; n (the residual add); x, d: float32 [n]. */
    public void add(long x, long d, long n) {
        checkCount("add", n);
        if (n > 0) {
            add.launch(blocks(n, 256), 1, 256, 0, x, d, n);
        }
    }

    /**
     * dst[i] = the fp16 bits of src[i] for i &lt; n; src: float32 [n], dst: fp16 [n] (2 bytes each).
     * Bit for bit core's {@code Floats.floatToF16} ({@link Float#floatToFloat16}): round to nearest
     * even, subnormal halves kept, |x| ≥ 65520 to ±Inf; a NaN stays a NaN of the same sign.
     */
    public void toHalf(long srcF32, long dstF16, long n) {
        checkCount("toHalf", n);
        if (n > 0) {
            toHalf.launch(blocks(n, 256), 1, 256, 0, srcF32, dstF16, n);
        }
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

    /** {@link #attention(long, long, long, int, int, int, int, int, int, long, DeviceBuffer)} without a window: plain causal. */
    public void attention(long q, long k, long v, int B, int T, int H, int Hkv, int D, long out,
                          DeviceBuffer scores) {
        attention(q, k, v, B, T, H, Hkv, D, 0, out, scores);
    }

    /**
     * Causal self-attention of B independent sequences of T tokens (each from position 0) with
     * grouped KV heads. q, out: [B·T, H, D]; k, v: [B·T, Hkv, D]; scores: at least
     * {@link #attentionScratch} floats. Per sequence: S = q·kᵀ/√D for all heads (cuBLAS strided
     * batched over the KV heads, once per query head of a group), a causal softmax in place, then
     * out = P·v (batched the same way): the [T, T] scores are materialised, which at T ≤ a few
     * thousand costs less than the tensor-core GEMMs save.
     *
     * <p>{@code window}: a sliding window as {@code Ops.attention}'s: the query at position p
     * attends keys max(0, p − window + 1)..p only; ≤ 0 or ≥ T is plain causal attention. The
     * softmax zeroes the keys outside the window; the GEMMs still run over all T keys.
     */
    public void attention(long q, long k, long v, int B, int T, int H, int Hkv, int D, int window, long out,
                          DeviceBuffer scores) {
        attention(q, k, v, B, T, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, out, scores);
    }

    /**
     * {@link #attention(long, long, long, int, int, int, int, int, int, long, DeviceBuffer)} with the
     * scores' scale (the first GEMM's alpha, in float32) and a soft-cap c &gt; 0: each visible score s
     * becomes c·tanh(s/c) in the softmax kernel before its max (Gemma 2; {@code Ops.attention}'s math).
     */
    public void attention(long q, long k, long v, int B, int T, int H, int Hkv, int D, int window, double scoreScale,
                          float softcap, long out, DeviceBuffer scores) {
        if (B < 0 || T < 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || D <= 0) {
            throw new IllegalArgumentException("attention: B " + B + ", T " + T + ", H " + H + ", Hkv " + Hkv + ", D "
                    + D + " (H must be a positive multiple of Hkv)");
        }
        if (B == 0 || T == 0) {
            return;
        }
        if (scores.bytes() < attentionScratch(T, H) * 4) {
            throw new IllegalArgumentException("attention scratch of " + scores.bytes() + " bytes; needs "
                    + attentionScratch(T, H) * 4);
        }
        int g = H / Hkv, qDim = H * D, kvDim = Hkv * D;
        float scale = (float) scoreScale;
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
            softmax.launch(H * T, 1, Math.min(1024, Math.max(32, (T + 31) / 32 * 32)), 0, S, T,
                    window > 0 && window < T ? window : 0, softcap);
            for (int r = 0; r < g; r++) {
                // O_h[T, D] = P_h · V_j, written into out's head-h columns
                blas.gemmStridedBatchedRowMajor(math(), false, false, T, D, T, 1f,
                        S + 4L * r * TT, T, g * TT, vb, kvDim, D, 0f, ob + 4L * r * D, qDim, (long) g * D, Hkv);
            }
        }
    }

    /**
     * Whether {@link #flashAttention} runs here for head dim D: D of 32, 64, 96 or 128 on a GPU of
     * compute capability 8.0+ (mma.m16n8k16, ldmatrix, cp.async).
     */
    public boolean flashSupports(int D) {
        return (D == 32 || D == 64 || D == 96 || D == 128) && device.computeCapabilityMajor() >= 8;
    }

    /** Bytes of the fp16 scratch {@link #flashAttention} needs for M = B·T rows: q, k and v in fp16. */
    public static long flashScratchBytes(long M, int H, int Hkv, int D) {
        return 2L * M * ((long) H + 2L * Hkv) * D;
    }

    /**
     * The attention of {@link #attention(long, long, long, int, int, int, int, int, int, double, float, long,
     * DeviceBuffer)} (same arguments, same masks, scale and soft-cap) fused on fp16 tensor cores
     * (flash.cu): q, k and v are rounded to fp16 into {@code halves} (at least {@link #flashScratchBytes}),
     * the scores are summed in float32 and never stored, the softmax weights are rounded to fp16 for
     * the product with v, and the output is float32. This is {@link GemmMath#FP16}'s attention: fp16
     * inputs as PyTorch's fp16 scaled-dot-product attention takes them, not float32's bits.
     */
    public void flashAttention(long q, long k, long v, int B, int T, int H, int Hkv, int D, int window,
                               double scoreScale, float softcap, long out, DeviceBuffer halves) {
        if (B < 0 || T < 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || !flashSupports(D)) {
            throw new IllegalArgumentException("flashAttention: B " + B + ", T " + T + ", H " + H + ", Hkv " + Hkv
                    + ", D " + D + " (H a positive multiple of Hkv; D of 32, 64, 96 or 128 on sm_80+)");
        }
        if (B == 0 || T == 0) {
            return;
        }
        long M = (long) B * T;
        if (halves.bytes() < flashScratchBytes(M, H, Hkv, D)) {
            throw new IllegalArgumentException("flashAttention scratch of " + halves.bytes() + " bytes; needs "
                    + flashScratchBytes(M, H, Hkv, D));
        }
        long qh = halves.address(), kh = qh + 2L * M * H * D, vh = kh + 2L * M * Hkv * D;
        toHalf(q, qh, M * H * D);
        toHalf(k, kh, M * Hkv * D);
        toHalf(v, vh, M * Hkv * D);
        if (flash == null) {
            flash = device.module("flash.cu");
        }
        CudaKernel kernel = flashKernels.computeIfAbsent(D, dim -> flash.kernel("flash_attention_" + dim));
        int tiles = (T + 63) / 64, shared = 2 * 64 * (D + 8) * 2;
        int perLaunch = Math.max(1, 65535 / H); // the grid's y (sequences × heads) is at most 65535
        for (int b0 = 0; b0 < B; b0 += perLaunch) {
            int n = Math.min(perLaunch, B - b0);
            long rows = (long) b0 * T;
            kernel.launch(tiles, H * n, 128, shared, qh + 2 * rows * H * D, kh + 2 * rows * Hkv * D,
                    vh + 2 * rows * Hkv * D, out + 4 * rows * H * D, T, H, Hkv,
                    window > 0 && window < T ? window : 0, (float) scoreScale, softcap);
        }
    }

    // ---------------------------------------------------------------- loss

    /**
     * Per-row negative log-likelihood, the math of {@link CudaOps#crossEntropy} (its kernel):
     * nll[m] = max + log Σ_v exp(logits[m, v] − max) − logits[m, targets[m]], the exponentials summed
     * in double. logits: float32 [M, V]; targets: int32 [M], each in 0..V−1 (the caller checks) or
     * negative: a row to ignore, whose nll is 0; nll: float64 [M].
     */
    public void crossEntropy(long logits, long targets, int M, int V, long nll) {
        if (M < 0 || V <= 0) {
            throw new IllegalArgumentException("crossEntropy: M = " + M + ", V = " + V + " (V must be positive)");
        }
        if (M > 0) {
            crossEntropy.launch(M, 1, rowThreads(V), 0, logits, targets, nll, V);
        }
    }

    // ---------------------------------------------------------------- KV cache and quantized weights

    /**
     * In place on x: float32 [rows, heads·D], what {@link KvCacheType#roundTrip} does on the host
     * (per row and head, the D values quantized to int8/int4 with an fp16 scale and zero point and
     * dequantized back), bit for bit: the same float32 operations each rounded to nearest (no fused
     * multiply-add), Java's min/max (a NaN in a group makes the whole group NaN, as on the host;
     * only NaN payloads may differ). Nothing for {@link KvCacheType#FP16}.
     */
    public void kvRoundTrip(long x, long rows, int heads, int D, KvCacheType type) {
        if (rows < 0 || heads < 0 || D < 0) {
            throw new IllegalArgumentException("kvRoundTrip: rows " + rows + ", heads " + heads + ", D " + D);
        }
        if (!type.quantized() || rows == 0 || heads == 0 || D == 0) {
            return;
        }
        int qmax = (1 << type.bits()) - 1;
        long groups = rows * heads;
        kvRoundTrip.launch(blocks(groups, 256 / 32), 1, 256, 0, x, groups, D, qmax, 1f / qmax);
    }

    /**
     * Dequantizes a GPTQ-packed linear on the device into fp16 W [N, K] row-major (PyTorch's weight
     * layout): W[n, k] = fp16(scale[g, n] · (code[n, k] − zero[g, n])), the product in float32 rounded
     * to fp16 once, i.e. {@code Floats.floatToF16} of core's {@code QuantizedLinear.dequantize()}.
     * Packing as core's {@code GptqPacking}: qweight int32 [K·bits/32, N], qzeros int32 [G, N·bits/32],
     * scales fp16 [G, N].
     *
     * @param gIdx      int32 [K], the group of each input column (act-order; each in 0..G−1, the caller
     *                  checks), or 0: sequential, k / groupSize
     * @param groupSize input columns per group, or −1 for one group over all of K
     * @param bits      4 or 8
     * @param v1Zeros   qzeros in the v1 ("gptq") convention, which stores z − 1 (see
     *                  {@code GptqPacking.packQzeros}); false: v2 ("gptq_v2"), z as it is
     * @throws IllegalArgumentException for other bits, a group size that is neither positive nor −1,
     *                                  or K·bits or N·bits not a multiple of 32
     */
    public void dequantW4(long qweight, long qzeros, long scalesF16, long gIdx, int K, int N, int groupSize, int bits,
                          boolean v1Zeros, long outF16) {
        if (bits != 4 && bits != 8) {
            throw new IllegalArgumentException("dequantW4: bits " + bits + " is not supported on the device (4, 8)");
        }
        if (K <= 0 || N <= 0 || (long) K * bits % 32 != 0 || (long) N * bits % 32 != 0) {
            throw new IllegalArgumentException("dequantW4: K = " + K + " and N = " + N + " must be positive and, times "
                    + bits + " bits, multiples of 32");
        }
        if (groupSize <= 0 && groupSize != -1) {
            throw new IllegalArgumentException("dequantW4: group size " + groupSize + " must be positive or -1");
        }
        long words = (long) K * bits / 32 * N;
        dequantGptq.launch(blocks(words, 256), 1, 256, 0, qweight, qzeros, scalesF16, gIdx, K, N, groupSize, bits,
                v1Zeros ? 1 : 0, outF16);
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

    private static void checkCount(String op, long n) {
        if (n < 0) {
            throw new IllegalArgumentException(op + ": n = " + n + " is negative");
        }
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
        if (flash != null) {
            flash.close();
            flash = null;
            flashKernels.clear();
        }
    }
}
