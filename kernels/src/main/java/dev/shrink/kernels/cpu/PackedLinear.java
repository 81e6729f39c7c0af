package dev.shrink.kernels.cpu;

import dev.shrink.core.quant.QuantizedLinear;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * A 4- or 8-bit GPTQ/AWQ linear kept packed in memory and multiplied as it is:
 * {@code y[M, N] = x[M, K] · Wᵀ + bias} with W the {@link QuantizedLinear#dequantize() dequantized}
 * weights, without ever holding W in float32 (about N·K/2 bytes for 4 bits instead of 4·N·K).
 *
 * <p><b>Layout.</b> Output rows are cut into panels of {@link #P} = {@link Sgemm#NR} rows (two
 * vectors). A panel stores, for each word index r along K, the P words of its rows side by side:
 * {@code packed[(panel · words + r) · P + lane]}. Word r of row n holds the codes of input columns
 * {@code c·r .. c·r + c − 1} (c = 32 / bits codes per word), column {@code c·r + j} at bits
 * {@code bits·j}: exactly a GPTQ qweight word (FORMATS.md, "GPTQ"), so one vector load gives P/2
 * rows' codes for c columns. Scales and zero points are floats {@code [G, panels · P]}, the rows
 * past N padded with scale 0 (their products are computed and dropped). g_idx is kept as it is (no
 * permutation of K): K is walked in order in steps of columns sharing one word, group and K block,
 * each step loading its group's scale and zero vectors, so act-order (a new group at almost every
 * column) costs a step per column, about 2.5 times the time of sequential groups at M = 1.
 *
 * <p><b>Bits.</b> Every output element gets the float operations that {@link Sgemm} gives it for
 * {@code linear(x, q.dequantize())} followed by {@code y += bias}: the weight is
 * {@code scale · (float) (code − zero)} (vector: the code and zero as 2^23 + code and 2^23 + zero,
 * exactly subtracted, one rounded product), K is cut into Sgemm's blocks of at most {@link Sgemm#KC}, each
 * block is a chain of fused multiply-adds in column order from +0, the block sums are added in
 * order, then the bias. Vector lanes are output rows, so nothing depends on the vector width, the
 * tiles or the thread count: the result is bit-identical to {@code VectorOps.linear} on the
 * dequantized weights (and to the scalar chain of {@code PackedLinearTest}).
 *
 * <p><b>Speed.</b> M = 1 (decoding) streams the packed words once, each panel's rows accumulating
 * in two vector registers. M ≥ 2 dequantizes a block of W (one K block by up to {@link #NC}
 * columns) into a per-thread buffer already in Sgemm's packed-B format and runs Sgemm's
 * micro-kernels on it, so the dequantization is paid once per block and amortized over M rows.
 * The panel walk and the Sgemm bridge are {@link PanelLinear}'s, shared with {@link DenseLinear}.
 */
public final class PackedLinear extends PanelLinear {
    /**
     * 2^23 and its bits: a code c (below 2^23) or-ed into the mantissa of 2^23 is the float 2^23 + c,
     * and (2^23 + c) − (2^23 + z) = c − z exactly, what converting c and subtracting z gives, one
     * operation fewer (the and and the or fuse into one with AVX-512's ternary logic).
     */
    private static final float MAGIC = 0x1p23f;
    private static final int MAGIC_BITS = Float.floatToRawIntBits(MAGIC);

    private final String name;
    private final int bits, groupSize;
    /** Codes per 32-bit word (8 or 4), its log2, the code mask. */
    private final int cpw, logCpw, mask;
    /** Words along K per row. */
    private final int words;
    /** [panels][words][P] words of codes. */
    private final int[] packed;
    /** [G][np] scales and 2^23 + zero points as floats ({@link #MAGIC}), zero past N. */
    private final float[] scales, zeros;
    /**
     * Steps: the columns [stepK[t], stepK[t + 1]) lie in one word, one group and one K block; their
     * group's parameters start at stepG[t] = group · np. A new step starts at each word, group
     * change or K block, so K is walked in order whatever g_idx is.
     */
    private final int[] stepK, stepG;
    /** Block b holds the steps blockStep[b] .. blockStep[b + 1] − 1. */
    private final int[] blockStep;

    private PackedLinear(QuantizedLinear q) {
        super(q.N(), q.K(), q.bias());
        if (q.bits() != 4 && q.bits() != 8) {
            throw new IllegalArgumentException("quantized linear '" + q.name() + "': bits " + q.bits()
                    + " cannot be multiplied packed on the CPU (4 and 8 can); dequantize it instead");
        }
        name = q.name();
        bits = q.bits();
        groupSize = q.groupSize();
        cpw = 32 / bits;
        logCpw = Integer.numberOfTrailingZeros(cpw);
        mask = (1 << bits) - 1;
        words = (K + cpw - 1) / cpw;
        packed = new int[Math.multiplyExact(Math.multiplyExact(panels, words), P)];
        int[] codes = q.codes();
        for (int n = 0; n < N; n++) {
            int dst = (n / P) * words * P + n % P;
            int row = n * K;
            for (int k = 0; k < K; k++) {
                packed[dst + (k >> logCpw) * P] |= codes[row + k] << ((k & (cpw - 1)) * bits);
            }
        }
        int G = q.groupCount();
        scales = new float[G * np];
        zeros = new float[G * np];
        for (int g = 0; g < G; g++) {
            for (int n = 0; n < N; n++) {
                scales[g * np + n] = q.scales()[g * N + n];
                int z = q.zeros()[g * N + n];
                if (Math.abs(z) >= 1 << 22) {
                    throw new IllegalArgumentException(describe() + ": zero point " + z + " out of range");
                }
                zeros[g * np + n] = MAGIC + z; // 2^23 + z: exact in float
            }
        }
        int[] gIdx = q.gIdx();
        int[] k0 = new int[K + 1], gs = new int[K];
        blockStep = new int[blocks + 1];
        int steps = 0;
        for (int k = 0; k < K; k++) {
            if (k % kc == 0 || k % cpw == 0 || gIdx[k] != gIdx[k - 1]) {
                if (k % kc == 0) {
                    blockStep[k / kc] = steps;
                }
                k0[steps] = k;
                gs[steps++] = gIdx[k] * np;
            }
        }
        k0[steps] = K;
        blockStep[blocks] = steps;
        stepK = java.util.Arrays.copyOf(k0, steps + 1);
        stepG = java.util.Arrays.copyOf(gs, steps);
    }

    /**
     * Repacks a 4- or 8-bit linear for the CPU (its codes, scales, zeros, g_idx and bias are copied).
     *
     * @throws IllegalArgumentException for other bit widths, naming the linear and its bits
     */
    public static PackedLinear of(QuantizedLinear q) {
        return new PackedLinear(q);
    }

    public String name() {
        return name;
    }

    /** Output features. */
    public int outFeatures() {
        return N;
    }

    /** Input features. */
    public int inFeatures() {
        return K;
    }

    public int bits() {
        return bits;
    }

    public int groupSize() {
        return groupSize;
    }

    /** Heap bytes of the packed weights: codes, per-group scales and zeros, bias and the steps along K. */
    public long bytes() {
        return 4L * packed.length + 4L * scales.length + 4L * zeros.length + (bias == null ? 0 : 4L * bias.length)
                + 4L * (stepK.length + stepG.length + blockStep.length);
    }

    @Override
    String describe() {
        return "packed linear '" + name + "' [" + N + ", " + K + "]";
    }

    /** One panel per call: decoding the codes, not the FMA chains' latency, bounds it ({@link #blockChain}). */
    @Override
    int gemvPanels() {
        return 1;
    }

    @Override
    void blockChains(float[] x, int q, int count, int b, float[] tile) {
        blockChain(x, q, b, tile);
    }

    /**
     * tile[0, P) = the chain of block b for the rows of panel q: from +0, one FMA per column in
     * order with the weight scale · (code − zero) (code and zero exact in float, one rounded
     * product). One loop over the block's steps, one over a step's columns, and one call per block:
     * C2 (JDK 25) then keeps the accumulators in registers. It boxed a vector per column (100 MB per
     * call at 4096 × 4096, 5 to 8 times slower) when the shift was a second induction variable
     * ({@code sh += bits}) and, in some runs, when the whole of K ran in one call (compiled on-stack
     * before the code after the loop had a type profile).
     */
    private void blockChain(float[] x, int q, int b, float[] tile) {
        int base = q * words * P;
        int col = q * P;
        FloatVector a0 = FloatVector.zero(S), a1 = a0;
        for (int t = blockStep[b], tEnd = blockStep[b + 1]; t < tEnd; t++) {
            int gp = stepG[t] + col;
            FloatVector s0 = FloatVector.fromArray(S, scales, gp), s1 = FloatVector.fromArray(S, scales, gp + L);
            FloatVector z0 = FloatVector.fromArray(S, zeros, gp), z1 = FloatVector.fromArray(S, zeros, gp + L);
            int k = stepK[t], k1 = stepK[t + 1];
            int w = base + (k >> logCpw) * P;
            IntVector v0 = IntVector.fromArray(SI, packed, w), v1 = IntVector.fromArray(SI, packed, w + L);
            for (; k < k1; k++) {
                int sh = (k & (cpw - 1)) * bits;
                FloatVector xb = FloatVector.broadcast(S, x[k]);
                FloatVector c0 = v0.lanewise(VectorOperators.LSHR, sh).and(mask).or(MAGIC_BITS).reinterpretAsFloats();
                FloatVector c1 = v1.lanewise(VectorOperators.LSHR, sh).and(mask).or(MAGIC_BITS).reinterpretAsFloats();
                a0 = xb.fma(c0.sub(z0).mul(s0), a0);
                a1 = xb.fma(c1.sub(z1).mul(s1), a1);
            }
        }
        a0.intoArray(tile, 0);
        a1.intoArray(tile, L);
    }

    /** W[panels qc .. qc + qn, block b] dequantized into a per-thread buffer, [qn][kcb][P]. */
    @Override
    float[] blockB(int qc, int qn, int b, int pc, int kcb) {
        float[] bp = blockBuffer();
        dequantize(qc, qn, b, pc, kcb, bp);
        return bp;
    }

    @Override
    int panelB(int qc, int jp, int pc, int kcb) {
        return jp * kcb * P;
    }

    /**
     * W[panels q0 .. q0 + qn, block b] dequantized into bp as Sgemm's packed B, [qn][kcb][P]: the
     * weight of row q·P + lane at column pc + p at {@code bp[(q − q0)·kcb·P + p·P + lane]}.
     */
    private void dequantize(int q0, int qn, int b, int pc, int kcb, float[] bp) {
        for (int jp = 0; jp < qn; jp++) {
            int q = q0 + jp;
            int base = q * words * P;
            int col = q * P;
            int dst = jp * kcb * P - pc * P; // + k·P for column k
            for (int t = blockStep[b], tEnd = blockStep[b + 1]; t < tEnd; t++) {
                int gp = stepG[t] + col;
                FloatVector s0 = FloatVector.fromArray(S, scales, gp), s1 = FloatVector.fromArray(S, scales, gp + L);
                FloatVector z0 = FloatVector.fromArray(S, zeros, gp), z1 = FloatVector.fromArray(S, zeros, gp + L);
                int k = stepK[t], k1 = stepK[t + 1];
                int w = base + (k >> logCpw) * P;
                IntVector v0 = IntVector.fromArray(SI, packed, w), v1 = IntVector.fromArray(SI, packed, w + L);
                for (; k < k1; k++) {
                    int sh = (k & (cpw - 1)) * bits, d = dst + k * P; // sh += bits made C2 box vectors
                    FloatVector c0 = v0.lanewise(VectorOperators.LSHR, sh).and(mask).or(MAGIC_BITS)
                            .reinterpretAsFloats();
                    FloatVector c1 = v1.lanewise(VectorOperators.LSHR, sh).and(mask).or(MAGIC_BITS)
                            .reinterpretAsFloats();
                    c0.sub(z0).mul(s0).intoArray(bp, d);
                    c1.sub(z1).mul(s1).intoArray(bp, d + L);
                }
            }
        }
    }

    @Override
    public String toString() {
        return "PackedLinear[" + name + " N=" + N + " K=" + K + " bits=" + bits + " group=" + groupSize + "]";
    }
}
