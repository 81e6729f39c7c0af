package dev.shrink.kernels.cuda;

/**
 * AWQ's kernels (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization"; awq.cu, where each is
 * spelled out): the quantizer of {@code dev.shrink.awq.AwqQuantizer}, the scale search's and the
 * clip search's candidates batched over their grids, and the reductions of their losses. The block
 * loop that wires them with cuBLAS is {@code dev.shrink.awq.DeviceAwq}. Arguments are device
 * addresses ({@link DeviceBuffer#address()}, {@link DeviceBuffer#floatAt}) of row-major tensors;
 * 0 stands for an absent optional one. Every call is queued on the device's stream.
 *
 * <p>Dimension letters: W [N, K] (N outputs, K inputs), groups of {@code len} consecutive inputs
 * (K % len == 0), G = K / len; R candidates of the scale search, S steps of the clip search.
 */
public final class CudaAwq implements AutoCloseable {
    private static final int THREADS = 256;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel scaledQdq, sub, dot, sqDiff, colAbsSum, gatherRows, divCols, clipQdq, clipBest, quantize;

    public CudaAwq(CudaDevice device) {
        this.device = device;
        module = device.module("awq.cu");
        scaledQdq = module.kernel("awq_scaled_qdq");
        sub = module.kernel("awq_sub");
        dot = module.kernel("awq_dot");
        sqDiff = module.kernel("awq_sq_diff");
        colAbsSum = module.kernel("awq_col_abs_sum");
        gatherRows = module.kernel("awq_gather_rows");
        divCols = module.kernel("awq_div_cols");
        clipQdq = module.kernel("awq_clip_qdq");
        clipBest = module.kernel("awq_clip_best");
        quantize = module.kernel("awq_quantize");
    }

    public CudaDevice device() {
        return device;
    }

    private static int warpBlocks(long items) {
        return DeviceOps.blocks(items * 32, THREADS);
    }

    private static void checkGroups(int K, int len) {
        if (len <= 0 || K % len != 0) {
            throw new IllegalArgumentException("K = " + K + " is not a multiple of the group length " + len);
        }
    }

    /** out[r] = Q(W·diag(s_r))·diag(s_r)⁻¹ for s: [R, K] → out: [R, N, K]; s = 0: out = Q(W) (R = 1). */
    public void scaledQdq(long W, long s, long out, int R, int N, int K, int len) {
        checkGroups(K, len);
        if (s == 0 && R != 1) {
            throw new IllegalArgumentException("without scales R must be 1, got " + R);
        }
        scaledQdq.launch(warpBlocks((long) R * N * (K / len)), 1, THREADS, 0, W, s, out, R, N, K, len);
    }

    /** D[r] = W − D[r] for the R blocks of nk floats of D (the candidates' weight errors). */
    public void sub(long W, long D, long nk, int R) {
        sub.launch(DeviceOps.blocks(nk * R, THREADS), 1, THREADS, 0, W, D, nk, R);
    }

    /** out[r] += Σ_i A[r·per + i]·B[r·per + i] in double, r &lt; R; out: R doubles. */
    public void dot(long A, long B, long per, int R, long out) {
        dot.launch(Math.min(1024, DeviceOps.blocks(per, THREADS)), R, THREADS, 0, A, B, per, out);
    }

    /** out[0] += Σ (a − b)² in double over n floats (b = 0: Σ a²). */
    public void sqDiff(long a, long b, long n, long out) {
        sqDiff.launch(Math.min(2048, DeviceOps.blocks(n, THREADS)), 1, THREADS, 0, a, b, n, out);
    }

    /** acc[k] += Σ_m |x[m, k]| in double; x: [M, K], acc: K doubles. */
    public void colAbsSum(long x, long M, int K, long acc) {
        int rows = 256;
        long slices = (M + rows - 1) / rows;
        if (slices > 65535) {
            rows = (int) ((M + 65534) / 65535);
            slices = (M + rows - 1) / rows;
        }
        colAbsSum.launch((K + THREADS - 1) / THREADS, (int) slices, THREADS, 0, x, M, K, rows, acc);
    }

    /** out[j, :] = x[first + j·stride, :] for j &lt; count; x: [·, K]. */
    public void gatherRows(long x, int K, long first, int stride, int count, long out) {
        if (count > 0) {
            gatherRows.launch(DeviceOps.blocks((long) count * K, THREADS), 1, THREADS, 0, x, K, first, stride, count, out);
        }
    }

    /** X[t, k] /= s[k]; X: [T, K]. */
    public void divCols(long X, long s, long T, int K) {
        divCols.launch(DeviceOps.blocks(T * K, THREADS), 1, THREADS, 0, X, s, T, K);
    }

    /** The clip search's S candidates out: [S, N, K] = Q(clamp(W, ±max|W[n, g]|·(1 − i/grid))); orgMax: [N, G]. */
    public void clipQdq(long W, long out, long orgMax, int S, int N, int K, int len, int grid) {
        checkGroups(K, len);
        clipQdq.launch(warpBlocks((long) S * N * (K / len)), 1, THREADS, 0, W, out, orgMax, S, N, K, len, grid);
    }

    /**
     * The clip search's choice for groups g0 .. g0 + Gc − 1 from cur: [Gc][Ts, S·N] (the candidates'
     * partial outputs) and org: [Gc][Ts, N] (the original's): steps (int), maxVal (float), err0 and
     * errBest (double), each [N, G].
     */
    public void clipBest(long cur, long org, long orgMax, int Ts, int S, int N, int G, int g0, int Gc, int grid,
                         long steps, long maxVal, long err0, long errBest) {
        clipBest.launch(DeviceOps.blocks((long) Gc * N, THREADS), 1, THREADS, 0, cur, org, orgMax, Ts, S, N, G, g0, Gc,
                grid, steps, maxVal, err0, errBest);
    }

    /**
     * Round to nearest with zero points of W clamped to ±maxVal[n, g] (maxVal = 0: no clamp): codes
     * [N, K] bytes, scales [G, N] floats, zeros [G, N] ints, and (deq ≠ 0) the dequantized weights [N, K].
     */
    public void quantize(long W, long maxVal, long codes, long scales, long zeros, long deq, int N, int K, int len) {
        checkGroups(K, len);
        quantize.launch(warpBlocks((long) N * (K / len)), 1, THREADS, 0, W, maxVal, codes, scales, zeros, deq, N, K, len);
    }

    @Override
    public void close() {
        module.close();
    }
}
