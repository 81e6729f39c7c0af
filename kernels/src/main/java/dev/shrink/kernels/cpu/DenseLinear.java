package dev.shrink.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

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
 *
 * <p><b>bfloat16 weights.</b> When every weight is a bfloat16 value (its low 16 bits zero: a bf16
 * folder read as float32) the panels hold two columns per int, {@code pairs[(panel · ⌈K/2⌉ + k/2) ·
 * P + lane]} with column k (even) in the high half and k + 1 in the low half: half the memory and
 * half the bytes streamed per decoded token. A weight is its half moved to the high 16 bits, which
 * is exactly the float32 value, so the products and their order, and the bits of the result, are
 * the float32 layout's. M ≥ 2 expands one block at a time into Sgemm's packed-B format.
 */
public final class DenseLinear extends PanelLinear {
    /**
     * Panels per M = 1 step: 4 · 2 accumulators (with the broadcast input: 9 of 16 AVX2 registers).
     * One panel's two chains wait on the FMA latency: with 4, 384 × 384 took 8 µs instead of 10 to
     * 12, 4096 × 4096 3.3 ms instead of 3.9 to 4.5 (AVX-512, a busy 2-core machine, PackedLinearBench --dense).
     */
    static final int GEMV_PANELS = 4;

    private static final int HIGH = 0xFFFF0000;

    /** [panels][K][P] float32, or null when the weights are held as bfloat16 pairs. */
    private final float[] weights;
    /** [panels][⌈K/2⌉][P] two bfloat16 weights per int (columns 2r, 2r + 1), or null. */
    private final int[] pairs;
    /** ⌈K/2⌉: ints per panel row of {@link #pairs}. */
    private final int kp;

    private DenseLinear(float[] W, int N, int K, float[] bias) {
        super(N, K, bias);
        int panels = ceilDiv(N, P);
        kp = (K + 1) / 2;
        boolean bf16 = true;
        for (float w : W) {
            if ((Float.floatToRawIntBits(w) & ~HIGH) != 0) {
                bf16 = false;
                break;
            }
        }
        long size = (long) panels * P * (bf16 ? kp : K);
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(describe() + ": " + size
                    + " values with its rows rounded up to panels of " + P + ", more than a Java array holds");
        }
        if (bf16) {
            weights = null;
            pairs = new int[(int) size];
            for (int n = 0; n < N; n++) {
                int dst = (n / P) * kp * P + n % P;
                for (int k = 0, src = n * K; k < K; k++) {
                    int bits = Float.floatToRawIntBits(W[src + k]);
                    pairs[dst + (k >> 1) * P] |= (k & 1) == 0 ? bits : bits >>> 16;
                }
            }
        } else {
            pairs = null;
            weights = new float[(int) size];
            for (int n = 0; n < N; n++) {
                int dst = (n / P) * K * P + n % P;
                for (int k = 0, src = n * K; k < K; k++, dst += P) {
                    weights[dst] = W[src + k];
                }
            }
        }
    }

    /**
     * Lays out W [N, K] (row-major, PyTorch's layout) and copies the bias ([N] or null); neither is
     * kept, so the caller may drop W. Weights that are all bfloat16 values are held as bfloat16.
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

    /** dst[off .. off + K) = W[n, :] (row n as the products use it). */
    public void row(int n, float[] dst, int off) {
        if (n < 0 || n >= N || off < 0 || off + K > dst.length) {
            throw new IllegalArgumentException(describe() + ": row " + n + " into " + dst.length + " floats at " + off);
        }
        int lane = n % P;
        if (pairs != null) {
            for (int k = 0, w = (n / P) * kp * P + lane; k < K; k++) {
                int v = pairs[w + (k >> 1) * P];
                dst[off + k] = Float.intBitsToFloat((k & 1) == 0 ? v & HIGH : v << 16);
            }
        } else {
            for (int k = 0, w = (n / P) * K * P + lane; k < K; k++, w += P) {
                dst[off + k] = weights[w];
            }
        }
    }

    /** Whether the weights are held as bfloat16 (every one of them was a bfloat16 value). */
    public boolean bf16() {
        return pairs != null;
    }

    /** Heap bytes: the laid-out weights and the bias. */
    @Override
    public long bytes() {
        return 4L * (pairs != null ? pairs.length : weights.length) + (bias == null ? 0 : 4L * bias.length);
    }

    @Override
    String describe() {
        return "dense linear [" + N + ", " + K + "]";
    }

    @Override
    int gemvPanels() {
        return GEMV_PANELS;
    }

    /**
     * tile[0, count · P) = block b's chains for panels q .. q + count − 1. Each panel's two
     * accumulators see the block's columns in order, whichever of these loops runs them.
     */
    @Override
    void blockChains(float[] x, int q, int count, int b, float[] tile) {
        int k0 = b * kc, k1 = Math.min(K, k0 + kc);
        int j = 0;
        if (pairs != null) {
            for (; j + 4 <= count; j += 4) {
                pairChains4(x, k0, k1, (q + j) * kp * P, tile, j * P);
            }
            for (; j < count; j++) {
                pairChains1(x, k0, k1, (q + j) * kp * P, tile, j * P);
            }
            return;
        }
        for (; j + 4 <= count; j += 4) {
            chains4(x, k0, k1, (q + j) * K * P, tile, j * P);
        }
        for (; j < count; j++) {
            chains1(x, k0, k1, (q + j) * K * P, tile, j * P);
        }
    }

    /** The weight vector of column k from its pair vector v: the high half (k even) or the low half moved up. */
    private static FloatVector half(IntVector v, int k) {
        return ((k & 1) == 0 ? v.and(HIGH) : v.lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    /**
     * {@link #chains1} over bfloat16 pairs (the panel at w0 in pairs): an odd first column and an odd
     * last one alone, the columns between two per loaded int.
     */
    private void pairChains1(float[] x, int k0, int k1, int w0, float[] tile, int t) {
        FloatVector a0 = FloatVector.zero(S), a1 = a0;
        int k = k0;
        for (; k < k1 && (k & 1) == 1; k++) { // at most once: the low half of a pair
            int w = w0 + (k >> 1) * P;
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(half(IntVector.fromArray(SI, pairs, w), k), a0);
            a1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + L), k), a1);
        }
        for (; k + 1 < k1; k += 2) {
            int w = w0 + (k >> 1) * P;
            IntVector v0 = IntVector.fromArray(SI, pairs, w), v1 = IntVector.fromArray(SI, pairs, w + L);
            FloatVector xe = FloatVector.broadcast(S, x[k]), xo = FloatVector.broadcast(S, x[k + 1]);
            a0 = xe.fma(v0.and(HIGH).reinterpretAsFloats(), a0);
            a1 = xe.fma(v1.and(HIGH).reinterpretAsFloats(), a1);
            a0 = xo.fma(v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = xo.fma(v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
        }
        for (; k < k1; k++) { // at most once: the high half of a pair
            int w = w0 + (k >> 1) * P;
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(half(IntVector.fromArray(SI, pairs, w), k), a0);
            a1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + L), k), a1);
        }
        a0.intoArray(tile, t);
        a1.intoArray(tile, t + L);
    }

    /** {@link #chains4} over bfloat16 pairs, as {@link #pairChains1}. */
    private void pairChains4(float[] x, int k0, int k1, int w0, float[] tile, int t) {
        int stride = kp * P;
        FloatVector a0 = FloatVector.zero(S), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int k = k0;
        for (; k < k1 && (k & 1) == 1; k++) {
            int w = w0 + (k >> 1) * P;
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(half(IntVector.fromArray(SI, pairs, w), k), a0);
            a1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + L), k), a1);
            b0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + stride), k), b0);
            b1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + stride + L), k), b1);
            c0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 2 * stride), k), c0);
            c1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 2 * stride + L), k), c1);
            d0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 3 * stride), k), d0);
            d1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 3 * stride + L), k), d1);
        }
        for (; k + 1 < k1; k += 2) {
            int w = w0 + (k >> 1) * P;
            FloatVector xe = FloatVector.broadcast(S, x[k]), xo = FloatVector.broadcast(S, x[k + 1]);
            IntVector va0 = IntVector.fromArray(SI, pairs, w), va1 = IntVector.fromArray(SI, pairs, w + L);
            IntVector vb0 = IntVector.fromArray(SI, pairs, w + stride), vb1 = IntVector.fromArray(SI, pairs, w + stride + L);
            IntVector vc0 = IntVector.fromArray(SI, pairs, w + 2 * stride);
            IntVector vc1 = IntVector.fromArray(SI, pairs, w + 2 * stride + L);
            IntVector vd0 = IntVector.fromArray(SI, pairs, w + 3 * stride);
            IntVector vd1 = IntVector.fromArray(SI, pairs, w + 3 * stride + L);
            a0 = xe.fma(va0.and(HIGH).reinterpretAsFloats(), a0);
            a1 = xe.fma(va1.and(HIGH).reinterpretAsFloats(), a1);
            b0 = xe.fma(vb0.and(HIGH).reinterpretAsFloats(), b0);
            b1 = xe.fma(vb1.and(HIGH).reinterpretAsFloats(), b1);
            c0 = xe.fma(vc0.and(HIGH).reinterpretAsFloats(), c0);
            c1 = xe.fma(vc1.and(HIGH).reinterpretAsFloats(), c1);
            d0 = xe.fma(vd0.and(HIGH).reinterpretAsFloats(), d0);
            d1 = xe.fma(vd1.and(HIGH).reinterpretAsFloats(), d1);
            a0 = xo.fma(va0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = xo.fma(va1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1);
            b0 = xo.fma(vb0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), b0);
            b1 = xo.fma(vb1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), b1);
            c0 = xo.fma(vc0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), c0);
            c1 = xo.fma(vc1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), c1);
            d0 = xo.fma(vd0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d0);
            d1 = xo.fma(vd1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d1);
        }
        for (; k < k1; k++) {
            int w = w0 + (k >> 1) * P;
            FloatVector xb = FloatVector.broadcast(S, x[k]);
            a0 = xb.fma(half(IntVector.fromArray(SI, pairs, w), k), a0);
            a1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + L), k), a1);
            b0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + stride), k), b0);
            b1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + stride + L), k), b1);
            c0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 2 * stride), k), c0);
            c1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 2 * stride + L), k), c1);
            d0 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 3 * stride), k), d0);
            d1 = xb.fma(half(IntVector.fromArray(SI, pairs, w + 3 * stride + L), k), d1);
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

    /**
     * The float32 layout itself (panel qc + jp's block starts at its column pc); bfloat16 pairs
     * expanded into this thread's block buffer, [qn][kcb][P].
     */
    @Override
    float[] blockB(int qc, int qn, int b, int pc, int kcb) {
        if (pairs == null) {
            return weights;
        }
        float[] bp = blockBuffer();
        for (int jp = 0; jp < qn; jp++) {
            int w0 = (qc + jp) * kp * P, dst = jp * kcb * P - pc * P; // + k·P for column k
            for (int k = pc; k < pc + kcb; k++) {
                int w = w0 + (k >> 1) * P, d = dst + k * P;
                half(IntVector.fromArray(SI, pairs, w), k).intoArray(bp, d);
                half(IntVector.fromArray(SI, pairs, w + L), k).intoArray(bp, d + L);
            }
        }
        return bp;
    }

    @Override
    int panelB(int qc, int jp, int pc, int kcb) {
        return pairs == null ? ((qc + jp) * K + pc) * P : jp * kcb * P;
    }

    @Override
    public String toString() {
        return "DenseLinear[N=" + N + " K=" + K + (pairs != null ? " bf16" : "") + (bias == null ? "" : " bias") + "]";
    }
}
