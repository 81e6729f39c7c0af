package dev.shrink.kernels.cpu;

import jdk.incubator.vector.FloatVector;

/**
 * A float32 linear laid out once for the CPU and multiplied as it is:
 * {@code y[M, N] = x[M, K] · Wᵀ + bias}, bit for bit {@code VectorOps.linear(x, W)} followed by
 * {@code y += bias} (see {@link PanelLinear} for the order of the float operations), without
 * repacking W on every call as {@link Sgemm} does: at M = 1 (decoding) that packing, a strided
 * transpose of the whole of W, is most of the cost.
 *
 * <p><b>Layout.</b> Output rows are cut into panels of {@link #P} = {@link Sgemm#NR} rows (two
 * vectors); a panel stores, for each input column k, the weights of its P rows side by side:
 * {@code weights[(panel · K + k) · P + lane] = W[panel · P + lane, k]}, rows past N zero (their
 * products are computed and dropped). Panel q's columns pc .. pc + kc are then already Sgemm's
 * packed B for one K block, so M ≥ 2 runs Sgemm's micro-kernels on the layout in place, and M = 1
 * streams it once, each panel's rows accumulating in two vector registers, {@link #GEMV_PANELS}
 * panels at a time (more independent FMA chains than one panel's two, which would wait on the
 * FMA latency). Memory: 4 · ⌈N / P⌉ · P · K bytes, the float32 weights plus at most P − 1 rows.
 */
public final class DenseLinear extends PanelLinear {
    /**
     * Panels per M = 1 step: 4 · 2 accumulators (with the broadcast input: 9 of 16 AVX2 registers).
     * One panel's two chains wait on the FMA latency: with 4, 384 × 384 took 8 µs instead of 10 to
     * 12, 4096 × 4096 3.3 ms instead of 3.9 to 4.5 (AVX-512, a busy 2-core machine, PackedLinearBench --dense).
     */
    static final int GEMV_PANELS = 4;
    /**
     * Weights (N·K) per task at least for M = 1; fewer make one task on the caller. With 2^15 the
     * fixture's linears (384 × 384 .. 1024 × 384, 8 to 22 µs on one thread) forked and took 3 to 10
     * times longer on a busy 2-core machine; 2^18 keeps them on the caller.
     */
    static final long MIN_TASK_WEIGHTS = 1L << 18;

    /** [panels][K][P]. */
    private final float[] weights;

    private DenseLinear(float[] W, int N, int K, float[] bias) {
        super(N, K, bias);
        int panels = ceilDiv(N, P);
        long size = (long) panels * P * K;
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(describe() + ": " + size
                    + " floats with its rows rounded up to panels of " + P + ", more than a Java array holds");
        }
        weights = new float[(int) size];
        for (int n = 0; n < N; n++) {
            int dst = (n / P) * K * P + n % P;
            for (int k = 0, src = n * K; k < K; k++, dst += P) {
                weights[dst] = W[src + k];
            }
        }
    }

    /**
     * Lays out W [N, K] (row-major, PyTorch's layout) and copies the bias ([N] or null); neither is
     * kept, so the caller may drop W.
     *
     * @throws IllegalArgumentException for N or K below 1, or W or bias of other lengths
     */
    public static DenseLinear of(float[] W, int N, int K, float[] bias) {
        if (N < 1 || K < 1 || (long) N * K != W.length || (bias != null && bias.length != N)) {
            throw new IllegalArgumentException("dense linear [" + N + ", " + K + "]: weights of " + W.length
                    + " floats" + (bias == null ? "" : " and a bias of " + bias.length)
                    + " (expected N·K = " + (long) N * K + (bias == null ? "" : " and N") + ", N and K ≥ 1)");
        }
        return new DenseLinear(W, N, K, bias);
    }

    /** Output features. */
    public int outFeatures() {
        return N;
    }

    /** Input features. */
    public int inFeatures() {
        return K;
    }

    /** Heap bytes: the laid-out weights and the bias. */
    public long bytes() {
        return 4L * weights.length + (bias == null ? 0 : 4L * bias.length);
    }

    @Override
    String describe() {
        return "dense linear [" + N + ", " + K + "]";
    }

    @Override
    int gemvPanels() {
        return GEMV_PANELS;
    }

    @Override
    long minTaskWeights() {
        return MIN_TASK_WEIGHTS;
    }

    /**
     * tile[0, count · P) = block b's chains for panels q .. q + count − 1. Each panel's two
     * accumulators see the block's columns in order, whichever of these loops runs them.
     */
    @Override
    void blockChains(float[] x, int q, int count, int b, float[] tile) {
        int k0 = b * kc, k1 = Math.min(K, k0 + kc);
        int j = 0;
        for (; j + 4 <= count; j += 4) {
            chains4(x, k0, k1, (q + j) * K * P, tile, j * P);
        }
        for (; j < count; j++) {
            chains1(x, k0, k1, (q + j) * K * P, tile, j * P);
        }
    }

    /** One panel (at w0 in weights) over columns k0 .. k1: tile[t, t + P). */
    private void chains1(float[] x, int k0, int k1, int w0, float[] tile, int t) {
        FloatVector a0 = FloatVector.zero(S), a1 = a0;
        for (int k = k0, w = w0 + k0 * P; k < k1; k++, w += P) {
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(FloatVector.fromArray(S, weights, w), a0);
            a1 = xb.fma(FloatVector.fromArray(S, weights, w + L), a1);
        }
        a0.intoArray(tile, t);
        a1.intoArray(tile, t + L);
    }

    /** Four consecutive panels (the first at w0) over columns k0 .. k1: tile[t, t + 4P). */
    private void chains4(float[] x, int k0, int k1, int w0, float[] tile, int t) {
        int stride = K * P;
        FloatVector a0 = FloatVector.zero(S), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        for (int k = k0, w = w0 + k0 * P; k < k1; k++, w += P) {
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(FloatVector.fromArray(S, weights, w), a0);
            a1 = xb.fma(FloatVector.fromArray(S, weights, w + L), a1);
            b0 = xb.fma(FloatVector.fromArray(S, weights, w + stride), b0);
            b1 = xb.fma(FloatVector.fromArray(S, weights, w + stride + L), b1);
            c0 = xb.fma(FloatVector.fromArray(S, weights, w + 2 * stride), c0);
            c1 = xb.fma(FloatVector.fromArray(S, weights, w + 2 * stride + L), c1);
            d0 = xb.fma(FloatVector.fromArray(S, weights, w + 3 * stride), d0);
            d1 = xb.fma(FloatVector.fromArray(S, weights, w + 3 * stride + L), d1);
        }
        a0.intoArray(tile, t);
        a1.intoArray(tile, t + L);
        b0.intoArray(tile, t + P);
        b1.intoArray(tile, t + P + L);
        c0.intoArray(tile, t + 2 * P);
        c1.intoArray(tile, t + 2 * P + L);
        d0.intoArray(tile, t + 3 * P);
        d1.intoArray(tile, t + 3 * P + L);
    }

    /** The layout itself: panel qc + jp's block starts at its column pc. */
    @Override
    float[] blockB(int qc, int qn, int b, int pc, int kcb) {
        return weights;
    }

    @Override
    int panelB(int qc, int jp, int pc, int kcb) {
        return ((qc + jp) * K + pc) * P;
    }

    @Override
    public String toString() {
        return "DenseLinear[N=" + N + " K=" + K + (bias == null ? "" : " bias") + "]";
    }
}
