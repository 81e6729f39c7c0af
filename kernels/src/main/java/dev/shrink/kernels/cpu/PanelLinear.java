package dev.shrink.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * A linear {@code y[M, N] = x[M, K] · Wᵀ + bias} whose weights are laid out once in panels of
 * {@link #P} = {@link Sgemm#NR} output rows, and multiplied with the float operations {@link Sgemm}
 * gives each output element of {@code VectorOps.linear(x, W)} followed by {@code y += bias}: K cut
 * into Sgemm's blocks of at most {@link Sgemm#KC}, each block a chain of fused multiply-adds in
 * column order from +0, the block sums added in order, then the bias. Vector lanes are output rows,
 * so nothing depends on the vector width, the tiles or the thread count.
 *
 * <p>This class holds what does not depend on how the weights are stored: the walk over panels for
 * M = 1 (decoding: each panel's rows accumulate in vector registers while the weights stream by
 * once) and, for M ≥ 2, the bridge to Sgemm's micro-kernels (blocks of W in Sgemm's packed-B format,
 * [kc][P] per panel). The subclasses are the weight sources: {@link PackedLinear} (4/8-bit codes,
 * dequantized block by block) and {@link DenseLinear} (float32, already in the packed-B format).
 */
abstract sealed class PanelLinear permits PackedLinear, DenseLinear {
    static final VectorSpecies<Float> S = Sgemm.S;
    static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, S.vectorShape());
    static final int L = Sgemm.L;
    /** Output rows per panel: Sgemm's register tile width, two vectors. */
    static final int P = Sgemm.NR;
    /** Columns of W per block of the M ≥ 2 walk: about 0.75 MiB of floats at kc = 384 (an L2). */
    static final int NC = 512;
    /** Panels one {@link #blockChains} call may be asked for, at most (the tile holds 2 · 4 · P). */
    static final int MAX_GEMV_PANELS = 4;

    /** Per-thread buffers, shared by every linear (a thread runs one product at a time). */
    private static final ThreadLocal<float[]> A_BLOCKS = ThreadLocal.withInitial(() -> new float[0]);
    /** Per-thread blocks of W expanded to float32 for the M ≥ 2 walk ({@link #blockBuffer}). */
    private static final ThreadLocal<float[]> B_BLOCKS = ThreadLocal.withInitial(() -> new float[0]);
    private static final ThreadLocal<float[]> TILES = ThreadLocal.withInitial(() -> new float[8 * P]); // ≥ 2·4·P, 8·P

    /** Output and input features, output panels, N rounded up to whole panels. */
    final int N, K, panels, np;
    /** [N] or null. */
    final float[] bias;
    /** Sgemm's K block depth for this K, and the number of blocks. */
    final int kc, blocks;

    PanelLinear(int N, int K, float[] bias) {
        this.N = N;
        this.K = K;
        this.panels = ceilDiv(N, P);
        this.np = panels * P;
        this.bias = bias == null ? null : bias.clone();
        this.kc = ceilDiv(K, ceilDiv(K, Sgemm.KC));
        this.blocks = ceilDiv(K, kc);
    }

    /** Heap bytes the weights (and bias) take in this form. */
    public abstract long bytes();

    /** "packed linear 'name' [N, K]" or the like, for error messages. */
    abstract String describe();

    /** Panels per {@link #blockChains} call on the M = 1 path (1 .. {@link #MAX_GEMV_PANELS}). */
    abstract int gemvPanels();

    /**
     * Weights (N·K) per chunk at least for M = 1, whose chunks the caller and the pool's spinning
     * helpers share ({@link WorkerPool#forRangeSpinning}); fewer run on the caller alone.
     */
    static final long MIN_CHUNK_WEIGHTS = 1L << 15;

    /**
     * tile[0, count · P) = block b's chains for the rows of panels q .. q + count − 1 (count ≤
     * {@link #gemvPanels}): from +0, one FMA per column of the block in order, x[k] times the weight.
     */
    abstract void blockChains(float[] x, int q, int count, int b, float[] tile);

    /**
     * W[panels qc .. qc + qn, block b] (columns pc .. pc + kcb) in Sgemm's packed-B format, [kcb][P]
     * per panel, the weight of row q·P + lane at column pc + p at {@code p·P + lane} of its panel;
     * panel qc + jp starts at {@link #panelB}(qc, jp, pc, kcb) of the array returned. Called once
     * per block on the calling thread, before the micro-kernels read it.
     */
    abstract float[] blockB(int qc, int qn, int b, int pc, int kcb);

    /**
     * This thread's buffer for one block of W in Sgemm's packed-B format (kc by up to {@link #NC}
     * columns), shared by every linear that expands its weights per block (a thread runs one product
     * at a time).
     */
    final float[] blockBuffer() {
        float[] bp = B_BLOCKS.get();
        int need = kc * Math.min(NC / P, panels) * P;
        if (bp.length < need) {
            bp = new float[need];
            B_BLOCKS.set(bp);
        }
        return bp;
    }

    /** Where panel qc + jp of {@link #blockB}'s array starts. */
    abstract int panelB(int qc, int jp, int pc, int kcb);

    /**
     * y[M, N] = x[M, K] · Wᵀ + bias (row-major, from index 0), bit-identical to the CPU backend's
     * linear on W followed by adding the bias; threads from {@code workers}.
     */
    public void apply(float[] x, int M, float[] y, WorkerPool workers) {
        if (M < 0 || (long) M * K > x.length || (long) M * N > y.length) {
            throw new IllegalArgumentException(describe() + ": M = " + M + " with x of " + x.length
                    + " and y of " + y.length + " floats");
        }
        if (M == 0) {
            return;
        }
        if (M == 1) {
            // chunks of whole groups of g panels, so that every group but the last runs g at once
            int g = gemvPanels(), groups = ceilDiv(panels, g);
            int grain = (int) Math.max(1, MIN_CHUNK_WEIGHTS / ((long) g * P * K));
            workers.forRangeSpinning(groups, grain, (g0, g1) -> {
                for (int q = g0 * g, end = Math.min(panels, g1 * g); q < end; q += g) {
                    gemvPanels(x, q, Math.min(g, end - q), y);
                }
            });
        } else {
            gemm(x, M, y, workers);
        }
    }

    /**
     * y[0, panels q .. q + count) for M = 1: each K block's chains ({@link #blockChains}), the block
     * sums added in order, then the bias, in scalar code (a few adds per row and block).
     */
    private void gemvPanels(float[] x, int q, int count, float[] y) {
        float[] tile = TILES.get(); // [0, T): one block's sums; [T, 2T): the running total
        int T = MAX_GEMV_PANELS * P, w = count * P;
        for (int b = 0; b < blocks; b++) {
            blockChains(x, q, count, b, tile);
            for (int j = 0; j < w; j++) {
                // Sgemm stores the first block (times alpha = 1, exact), then adds each: fma(C, 1, t) = C + t
                tile[T + j] = b == 0 ? tile[j] : tile[T + j] + tile[j];
            }
        }
        int col = q * P;
        for (int j = 0, cols = Math.min(w, N - col); j < cols; j++) {
            y[col + j] = bias == null ? tile[T + j] : tile[T + j] + bias[col + j];
        }
    }

    /**
     * M ≥ 2: regions of whole panels and rows, each running Sgemm's blocked loop with
     * {@link #blockB}'s blocks of W in place of Sgemm's packed B.
     */
    private void gemm(float[] x, int M, float[] y, WorkerPool workers) {
        int threads = workers.threads();
        long macs = (long) M * N * K;
        int tasks = threads == 1 ? 1
                : (int) Math.max(1, Math.min((long) Sgemm.TASKS_PER_THREAD * threads, macs / Sgemm.MIN_TASK_MACS));
        // Each region reads (or dequantizes) W for its columns (N·K per row split) and packs x for its
        // rows (M·K per column split, scalar and strided: counted twice): the cheapest split into
        // about `tasks` regions. Splits change no bits.
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
        int ncp = NC / P; // panels per block of W
        float[] ap = A_BLOCKS.get();
        if (ap.length < Sgemm.MC * kc) {
            ap = new float[Sgemm.MC * kc];
            A_BLOCKS.set(ap);
        }
        float[] tile = TILES.get();
        for (int qc = q0; qc < q1; qc += ncp) {
            int qn = Math.min(ncp, q1 - qc);
            for (int b = 0; b < blocks; b++) {
                int pc = b * kc, kcb = Math.min(kc, K - pc);
                float[] bp = blockB(qc, qn, b, pc, kcb);
                int group = Math.max(1, Sgemm.B_SUBBLOCK_FLOATS / (kcb * P));
                for (int ic = m0; ic < m1; ic += Sgemm.MC) {
                    int mc = Math.min(Sgemm.MC, m1 - ic);
                    Sgemm.packA(false, x, 0, K, ic, mc, pc, kcb, mr, ap);
                    for (int g0 = 0; g0 < qn; g0 += group) {
                        int g1 = Math.min(qn, g0 + group);
                        for (int ir = 0; ir < mc; ir += mr) {
                            int rows = Math.min(mr, mc - ir);
                            for (int jp = g0; jp < g1; jp++) {
                                int bOff = panelB(qc, jp, pc, kcb);
                                if (mr == 8) {
                                    Sgemm.microKernel8x2(kcb, ap, ir * kcb, bp, bOff, tile);
                                } else {
                                    Sgemm.microKernel4x2(kcb, ap, ir * kcb, bp, bOff, tile);
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

    /**
     * W [N, K] row-major as the products use it (the dequantized weights, for packed codes), read back
     * from the panels: for code that needs the float matrix of a linear loaded for evaluation.
     */
    public float[] weights() {
        float[] W = new float[N * K];
        int ncp = NC / P;
        for (int qc = 0; qc < panels; qc += ncp) {
            int qn = Math.min(ncp, panels - qc);
            for (int b = 0; b < blocks; b++) {
                int pc = b * kc, kcb = Math.min(kc, K - pc);
                float[] bp = blockB(qc, qn, b, pc, kcb);
                for (int jp = 0; jp < qn; jp++) {
                    int off = panelB(qc, jp, pc, kcb);
                    for (int lane = 0; lane < P; lane++) {
                        int n = (qc + jp) * P + lane;
                        if (n >= N) {
                            break;
                        }
                        for (int p = 0; p < kcb; p++) {
                            W[n * K + pc + p] = bp[off + p * P + lane];
                        }
                    }
                }
            }
        }
        return W;
    }

    /** The bias [N] (a copy), or null. */
    public float[] biasValues() {
        return bias == null ? null : bias.clone();
    }

    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
