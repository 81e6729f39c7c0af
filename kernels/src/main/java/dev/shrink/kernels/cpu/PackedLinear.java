package dev.shrink.kernels.cpu;

import dev.shrink.core.quant.QuantizedLinear;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

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
 * {@code scale · (float) (code − zero)} (vector: the code and zero converted to float, exactly
 * subtracted, one rounded product), K is cut into Sgemm's blocks of at most {@link Sgemm#KC}, each
 * block is a chain of fused multiply-adds in column order from +0, the block sums are added in
 * order, then the bias. Vector lanes are output rows, so nothing depends on the vector width, the
 * tiles or the thread count: the result is bit-identical to {@code VectorOps.linear} on the
 * dequantized weights (and to the scalar chain of {@code PackedLinearTest}).
 *
 * <p><b>Speed.</b> M = 1 (decoding) streams the packed words once, each panel's rows accumulating
 * in two vector registers. M ≥ 2 dequantizes a block of W (one K block by up to {@link #NC}
 * columns) into a per-thread buffer already in Sgemm's packed-B format and runs Sgemm's
 * micro-kernels on it, so the dequantization is paid once per block and amortized over M rows.
 */
public final class PackedLinear {
    static final VectorSpecies<Float> S = Sgemm.S;
    static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, S.vectorShape());
    static final int L = Sgemm.L;
    /** Output rows per panel: Sgemm's register tile width, two vectors. */
    static final int P = Sgemm.NR;
    /** Columns of W dequantized per block for M ≥ 2: about 0.75 MiB of floats at kc = 384 (an L2). */
    static final int NC = 512;
    /**
     * Weights (N·K) per task at least for M = 1; fewer make one task on the caller. 2^18 is about
     * 20 µs of work: on a busy 2-core machine a fork cost more than that (384 × 384 took 0.035 ms
     * on two threads, 0.011 ms on one).
     */
    static final long MIN_TASK_WEIGHTS = 1L << 18;

    /** Per-thread buffers, shared by every PackedLinear (a thread runs one product at a time). */
    private static final ThreadLocal<float[]> A_BLOCKS = ThreadLocal.withInitial(() -> new float[0]);
    private static final ThreadLocal<float[]> B_BLOCKS = ThreadLocal.withInitial(() -> new float[0]);
    private static final ThreadLocal<float[]> TILES = ThreadLocal.withInitial(() -> new float[8 * P]); // ≥ 2P

    private final String name;
    private final int N, K, bits, groupSize;
    /** Codes per 32-bit word (8 or 4), its log2, the code mask. */
    private final int cpw, logCpw, mask;
    /** Words along K per row, output panels, N rounded up to whole panels. */
    private final int words, panels, np;
    /** [panels][words][P] words of codes. */
    private final int[] packed;
    /** [G][np] scales and zero points as floats, zero past N. */
    private final float[] scales, zeros;
    /** [N] or null. */
    private final float[] bias;
    /** Sgemm's K block depth for this K, and the number of blocks. */
    private final int kc, blocks;
    /**
     * Steps: the columns [stepK[t], stepK[t + 1]) lie in one word, one group and one K block; their
     * group's parameters start at stepG[t] = group · np. A new step starts at each word, group
     * change or K block, so K is walked in order whatever g_idx is.
     */
    private final int[] stepK, stepG;
    /** Block b holds the steps blockStep[b] .. blockStep[b + 1] − 1. */
    private final int[] blockStep;

    private PackedLinear(QuantizedLinear q) {
        if (q.bits() != 4 && q.bits() != 8) {
            throw new IllegalArgumentException("quantized linear '" + q.name() + "': bits " + q.bits()
                    + " cannot be multiplied packed on the CPU (4 and 8 can); dequantize it instead");
        }
        name = q.name();
        N = q.N();
        K = q.K();
        bits = q.bits();
        groupSize = q.groupSize();
        cpw = 32 / bits;
        logCpw = Integer.numberOfTrailingZeros(cpw);
        mask = (1 << bits) - 1;
        words = (K + cpw - 1) / cpw;
        panels = (N + P - 1) / P;
        np = panels * P;
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
                zeros[g * np + n] = q.zeros()[g * N + n]; // a small integer: exact in float
            }
        }
        bias = q.bias() == null ? null : q.bias().clone();
        kc = ceilDiv(K, ceilDiv(K, Sgemm.KC));
        blocks = ceilDiv(K, kc);
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

    /**
     * y[M, N] = x[M, K] · Wᵀ + bias (row-major, from index 0), bit-identical to the CPU backend's
     * linear on the dequantized weights followed by adding the bias; threads from {@code workers}.
     */
    public void apply(float[] x, int M, float[] y, WorkerPool workers) {
        if (M < 0 || (long) M * K > x.length || (long) M * N > y.length) {
            throw new IllegalArgumentException("packed linear '" + name + "' [" + N + ", " + K + "]: M = " + M
                    + " with x of " + x.length + " and y of " + y.length + " floats");
        }
        if (M == 0) {
            return;
        }
        if (M == 1) {
            int grain = (int) Math.max(1, MIN_TASK_WEIGHTS / ((long) P * K));
            workers.forRange(panels, grain, (q0, q1) -> {
                for (int q = q0; q < q1; q++) {
                    gemvPanel(x, q, y);
                }
            });
        } else {
            gemm(x, M, y, workers);
        }
    }

    /**
     * y[0, panel q] for M = 1: each K block's chain of FMAs ({@link #blockChain}), the block sums
     * added in order, then the bias, in scalar code (a few adds per row and block).
     */
    private void gemvPanel(float[] x, int q, float[] y) {
        float[] tile = TILES.get(); // [0, P): one block's sums; [P, 2P): the running total
        int col = q * P;
        for (int b = 0; b < blocks; b++) {
            blockChain(x, q, b, tile);
            for (int j = 0; j < P; j++) {
                // Sgemm stores the first block (times alpha = 1, exact), then adds each: fma(C, 1, t) = C + t
                tile[P + j] = b == 0 ? tile[j] : tile[P + j] + tile[j];
            }
        }
        for (int j = 0, cols = Math.min(P, N - col); j < cols; j++) {
            y[col + j] = bias == null ? tile[P + j] : tile[P + j] + bias[col + j];
        }
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
                FloatVector c0 = (FloatVector) v0.lanewise(VectorOperators.LSHR, sh).and(mask)
                        .convert(VectorOperators.I2F, 0);
                FloatVector c1 = (FloatVector) v1.lanewise(VectorOperators.LSHR, sh).and(mask)
                        .convert(VectorOperators.I2F, 0);
                a0 = xb.fma(c0.sub(z0).mul(s0), a0);
                a1 = xb.fma(c1.sub(z1).mul(s1), a1);
            }
        }
        a0.intoArray(tile, 0);
        a1.intoArray(tile, L);
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
                    FloatVector c0 = (FloatVector) v0.lanewise(VectorOperators.LSHR, sh).and(mask)
                            .convert(VectorOperators.I2F, 0);
                    FloatVector c1 = (FloatVector) v1.lanewise(VectorOperators.LSHR, sh).and(mask)
                            .convert(VectorOperators.I2F, 0);
                    c0.sub(z0).mul(s0).intoArray(bp, d);
                    c1.sub(z1).mul(s1).intoArray(bp, d + L);
                }
            }
        }
    }

    /**
     * M ≥ 2: regions of whole panels and rows, each running Sgemm's blocked loop with the
     * dequantized block of W in place of the packed B.
     */
    private void gemm(float[] x, int M, float[] y, WorkerPool workers) {
        int threads = workers.threads();
        long macs = (long) M * N * K;
        int tasks = threads == 1 ? 1
                : (int) Math.max(1, Math.min((long) Sgemm.TASKS_PER_THREAD * threads, macs / Sgemm.MIN_TASK_MACS));
        // Each region dequantizes W for its columns (N·K per row split) and packs x for its rows
        // (M·K per column split, scalar and strided: counted twice): the cheapest split into about
        // `tasks` regions. Splits change no bits.
        int maxRows = ceilDiv(M, Sgemm.MIN_REGION_ROWS);
        int rowSplits = 1, colSplits = Math.min(tasks, panels);
        double best = Double.MAX_VALUE;
        for (int r = 1; r <= Math.min(tasks, maxRows); r++) {
            int c = Math.min(panels, ceilDiv(tasks, r));
            double cost = (double) r * N + 2.0 * c * M;
            if (cost < best) {
                best = cost;
                rowSplits = r;
                colSplits = c;
            }
        }
        int mr = L >= 16 ? 8 : 4; // Sgemm's choice; the tile height changes no bits
        int rowUnits = ceilDiv(M, mr), rows = rowSplits, cols = colSplits;
        workers.forEach(rows * cols, t -> {
            int r = t / cols, c = t % cols;
            int m0 = (int) Math.min(M, (long) rowUnits * r / rows * mr);
            int m1 = (int) Math.min(M, (long) rowUnits * (r + 1) / rows * mr);
            int q0 = (int) ((long) panels * c / cols), q1 = (int) ((long) panels * (c + 1) / cols);
            if (m0 < m1 && q0 < q1) {
                region(x, m0, m1, q0, q1, y, mr);
            }
        });
    }

    /** y[m0:m1, panels q0:q1] on the calling thread. */
    private void region(float[] x, int m0, int m1, int q0, int q1, float[] y, int mr) {
        int ncp = NC / P; // panels per dequantized block
        float[] ap = A_BLOCKS.get();
        if (ap.length < Sgemm.MC * kc) {
            ap = new float[Sgemm.MC * kc];
            A_BLOCKS.set(ap);
        }
        float[] bp = B_BLOCKS.get();
        int bNeed = kc * Math.min(ncp, q1 - q0) * P;
        if (bp.length < bNeed) {
            bp = new float[bNeed];
            B_BLOCKS.set(bp);
        }
        float[] tile = TILES.get();
        for (int qc = q0; qc < q1; qc += ncp) {
            int qn = Math.min(ncp, q1 - qc);
            for (int b = 0; b < blocks; b++) {
                int pc = b * kc, kcb = Math.min(kc, K - pc);
                dequantize(qc, qn, b, pc, kcb, bp);
                int group = Math.max(1, Sgemm.B_SUBBLOCK_FLOATS / (kcb * P));
                for (int ic = m0; ic < m1; ic += Sgemm.MC) {
                    int mc = Math.min(Sgemm.MC, m1 - ic);
                    Sgemm.packA(false, x, 0, K, ic, mc, pc, kcb, mr, ap);
                    for (int g0 = 0; g0 < qn; g0 += group) {
                        int g1 = Math.min(qn, g0 + group);
                        for (int ir = 0; ir < mc; ir += mr) {
                            int rows = Math.min(mr, mc - ir);
                            for (int jp = g0; jp < g1; jp++) {
                                if (mr == 8) {
                                    Sgemm.microKernel8x2(kcb, ap, ir * kcb, bp, jp * kcb * P, tile);
                                } else {
                                    Sgemm.microKernel4x2(kcb, ap, ir * kcb, bp, jp * kcb * P, tile);
                                }
                                int n0 = (qc + jp) * P;
                                Sgemm.storeTile(tile, rows, Math.min(P, N - n0), 1f, 0f, b == 0, y,
                                        (ic + ir) * N + n0, N);
                            }
                        }
                    }
                }
            }
        }
        if (bias != null) { // y += bias, as the forward adds it after the backend's linear
            int n0 = q0 * P, n1 = Math.min(N, q1 * P);
            for (int m = m0; m < m1; m++) {
                for (int n = n0; n < n1; n++) {
                    y[m * N + n] += bias[n];
                }
            }
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    @Override
    public String toString() {
        return "PackedLinear[" + name + " N=" + N + " K=" + K + " bits=" + bits + " group=" + groupSize + "]";
    }
}
