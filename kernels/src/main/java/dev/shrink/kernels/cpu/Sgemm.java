package dev.shrink.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Blocked single-precision GEMM on the Vector API, after Goto &amp; van de Geijn ("Anatomy of
 * high-performance matrix multiplication"): C = alpha · op(A) · op(B) + beta · C, all row-major.
 *
 * <p>C is cut into rectangular regions, one task each (several per thread, so work stealing
 * evens out a busy machine); a task runs the whole blocked product for its region with packing
 * buffers of its thread, so tasks never wait for each other:
 *
 * <pre>
 * for jc over the region's columns in steps of NC
 *   for pc over K in steps of kc (≈ KC)              one K block; the first one applies beta
 *     pack op(B)[pc.., jc..] → bp: panels of NR columns   [nc/NR][kc][NR], zero-padded
 *     for ic over the region's rows in steps of MC
 *       pack op(A)[ic.., pc..] → ap: panels of mr rows    [mc/mr][kc][mr], zero-padded (L2)
 *       for each group of B panels that fits in L2:
 *         for each A panel ir (L1):  for each B panel jr of the group:
 *           micro-kernel: mr × NR accumulators = ap[ir] ⊗ bp[jr] summed over kc
 *           C[ir.., jr..] = alpha · acc + (first ? beta · C : C)
 * </pre>
 *
 * Packing reads op(A) and op(B) through their stored layouts, so all four transpose cases run
 * the same micro-kernel on the same packed formats. Edges (M, N not multiples of mr, NR) are
 * zero-padded in the packed panels and stored with a scalar loop that performs exactly the same
 * float operations as the vector store. K blocks depend on K only. Each C element therefore
 * gets the same chain of FMAs whatever region, tile or thread computes it: results are
 * bit-identical for any thread count.
 */
final class Sgemm {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /** Floats per vector (8 with AVX2, 16 with AVX-512). */
    static final int L = S.length();
    /** Columns of the register tile: two vectors. */
    static final int NR = 2 * L;
    /**
     * Depth of one K block, at most: K is cut into equal blocks of ≤ KC (the model's K = 384 is one
     * block). Each block costs a pass over C, so deeper is better while an A panel [kc][mr] and
     * the packed A block stay in L1 and L2 (384 with MC = 96 did best of the 256..512 and
     * MC = 72..144 tried on a Zen 3 with 512 KiB of L2, on a noisy machine).
     */
    static final int KC = 384;
    /** Rows of A per packed block (a multiple of both tile heights); [MC, kc] floats (144 KiB) stay in L2. */
    static final int MC = 96;
    /** Columns of B per packed block. */
    static final int NC = 4096;
    /** Floats of packed B swept by one A panel before moving on (≈ 192 KiB, half an L2). */
    static final int B_SUBBLOCK_FLOATS = 48 * 1024;
    /** Multiply-adds (M·N·K) per task, at least: smaller gemms use fewer tasks, down to one on the caller. */
    static final long MIN_TASK_MACS = 1L << 22;
    /** Tasks per thread when the gemm is big enough: more than one lets fast threads help slow ones. */
    static final int TASKS_PER_THREAD = 4;
    /** Rows of C per region, at least (unless M is smaller). */
    static final int MIN_REGION_ROWS = 64;

    private final WorkerPool workers;
    /**
     * Rows of the register tile, mr × 2 vectors of accumulators: 4 where the CPU has 16 vector
     * registers (AVX2), 8 where it has 32 (AVX-512); see {@link #microKernel4x2}.
     */
    private final int mr;
    /** Per-thread packed A block [MC/mr][kc][mr]; instance state, never shared between threads. */
    private final ThreadLocal<float[]> aBlocks = ThreadLocal.withInitial(() -> new float[MC * KC]);
    /** Per-thread packed B block [nc/NR][kc][NR], grown on demand. */
    private final ThreadLocal<float[]> bBlocks = ThreadLocal.withInitial(() -> new float[0]);
    /** Per-thread register tile spill: [mr, NR]. */
    private final ThreadLocal<float[]> tiles;

    /** A gemm on these workers with the tile height that suits this CPU's vector registers. */
    Sgemm(WorkerPool workers) {
        this(workers, L >= 16 ? 8 : 4);
    }

    /** A gemm with tile height mr (4 or 8); tests use it to run both kernels on any CPU. */
    Sgemm(WorkerPool workers, int mr) {
        if (mr != 4 && mr != 8) {
            throw new IllegalArgumentException("tile height " + mr + " is not 4 or 8");
        }
        this.workers = workers;
        this.mr = mr;
        this.tiles = ThreadLocal.withInitial(() -> new float[mr * NR]);
    }

    /** See {@link dev.shrink.core.ops.Ops#gemm}; arguments are checked by the caller. */
    void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
              float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
              float beta, float[] C, int cOff, int ldc) {
        gemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, workers.threads());
    }

    /**
     * The same gemm on the calling thread only, for callers that are already one of several
     * parallel tasks (attention runs one per head and query block). Same results as {@link #gemm}.
     */
    void gemmOnCaller(boolean transA, boolean transB, int M, int N, int K, float alpha,
                      float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                      float beta, float[] C, int cOff, int ldc) {
        gemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, 1);
    }

    private void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
                      float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                      float beta, float[] C, int cOff, int ldc, int threads) {
        if (M == 0 || N == 0) {
            return;
        }
        if (K == 0) { // op(A)·op(B) is all zeros
            scale(M, N, beta, C, cOff, ldc);
            return;
        }
        int kc = ceilDiv(K, ceilDiv(K, KC)); // equal K blocks of at most KC, the last may be shorter

        // Regions: each packs op(B) for its columns (N·K per row split) and op(A) for its rows (M·K
        // per column split): the cheapest split into about `tasks` regions of at least
        // MIN_REGION_ROWS rows. Rows first made every region pack all of B, which for a wide B and a
        // few hundred rows (AWQ's stacked candidates: 512 × 23040 × 384) was a third of the time.
        long macs = (long) M * N * K;
        int tasks = (int) Math.max(1, Math.min((long) TASKS_PER_THREAD * threads, macs / MIN_TASK_MACS));
        if (threads == 1) {
            tasks = 1;
        }
        int bestRows = 1;
        double best = Double.MAX_VALUE;
        for (int r = 1, maxRows = Math.max(1, Math.min(tasks, ceilDiv(M, MIN_REGION_ROWS))); r <= maxRows; r++) {
            double cost = (double) r * N + (double) colSplits(tasks, r, N) * M;
            if (cost < best) {
                best = cost;
                bestRows = r;
            }
        }
        int rowSplits = bestRows, colSplits = colSplits(tasks, bestRows, N);
        int rowUnits = ceilDiv(M, mr), colUnits = ceilDiv(N, NR); // boundaries on whole tiles
        Region region = (r, c) -> {
            int m0 = split(r, rowSplits, rowUnits, mr, M), m1 = split(r + 1, rowSplits, rowUnits, mr, M);
            int n0 = split(c, colSplits, colUnits, NR, N), n1 = split(c + 1, colSplits, colUnits, NR, N);
            if (m0 < m1 && n0 < n1) {
                blocked(transA, transB, m0, m1, n0, n1, K, kc, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
            }
        };
        if (rowSplits * colSplits == 1) {
            region.run(0, 0);
        } else {
            workers.forEach(rowSplits * colSplits, t -> region.run(t / colSplits, t % colSplits));
        }
    }

    /** Column splits beside {@code rows} row splits for about {@code tasks} regions, at most one per NR columns. */
    private static int colSplits(int tasks, int rows, int N) {
        return Math.max(1, Math.min(ceilDiv(tasks, rows), ceilDiv(N, NR)));
    }

    /** Start of part i of {@code parts} when {@code units} tiles of {@code unit} are shared out, capped at n. */
    private static int split(int i, int parts, int units, int unit, int n) {
        return (int) Math.min(n, (long) units * i / parts * unit);
    }

    @FunctionalInterface
    private interface Region {
        void run(int rowSplit, int colSplit);
    }

    /** The blocked product for the region C[m0:m1, n0:n1], on the calling thread. */
    private void blocked(boolean transA, boolean transB, int m0, int m1, int n0, int n1, int K, int kcMax,
                         float alpha, float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                         float beta, float[] C, int cOff, int ldc) {
        float[] ap = aBlocks.get();
        int ncMax = Math.min(NC, n1 - n0);
        int bNeed = kcMax * ceilDiv(ncMax, NR) * NR;
        float[] bp = bBlocks.get();
        if (bp.length < bNeed) {
            bp = new float[bNeed];
            bBlocks.set(bp);
        }
        for (int jc = n0; jc < n1; jc += NC) {
            int nc = Math.min(NC, n1 - jc);
            for (int pc = 0; pc < K; pc += kcMax) {
                int kc = Math.min(kcMax, K - pc);
                boolean first = pc == 0;
                packB(transB, B, bOff, ldb, pc, kc, jc, nc, bp);
                for (int ic = m0; ic < m1; ic += MC) {
                    int mc = Math.min(MC, m1 - ic);
                    packA(transA, A, aOff, lda, ic, mc, pc, kc, mr, ap);
                    macroKernel(ap, bp, kc, mc, nc, alpha, beta, first, C, cOff + ic * ldc + jc, ldc);
                }
            }
        }
    }

    /**
     * Packs op(B)[pc : pc+kc, jc : jc+nc] into bp as [nc/NR][kc][NR], zero-padding the columns past
     * nc. op(B)[p, j] is B[p, j] (stored [K, N]) or B[j, p] (stored [N, K]).
     */
    static void packB(boolean transB, float[] B, int bOff, int ldb, int pc, int kc, int jc, int nc, float[] bp) {
        for (int jp = 0, panels = ceilDiv(nc, NR); jp < panels; jp++) {
            int j0 = jp * NR;
            int cols = Math.min(NR, nc - j0);
            int dst = jp * kc * NR;
            if (!transB) {
                int src = bOff + pc * ldb + jc + j0; // B[pc, jc + j0]
                for (int p = 0; p < kc; p++, src += ldb, dst += NR) {
                    if (cols == NR) {
                        FloatVector.fromArray(S, B, src).intoArray(bp, dst);
                        FloatVector.fromArray(S, B, src + L).intoArray(bp, dst + L);
                    } else {
                        System.arraycopy(B, src, bp, dst, cols);
                        java.util.Arrays.fill(bp, dst + cols, dst + NR, 0f);
                    }
                }
            } else {
                for (int j = 0; j < NR; j++) {
                    int d = dst + j;
                    if (j < cols) {
                        int src = bOff + (jc + j0 + j) * ldb + pc; // B[jc + j0 + j, pc]: a contiguous row
                        for (int p = 0; p < kc; p++, d += NR) {
                            bp[d] = B[src + p];
                        }
                    } else {
                        for (int p = 0; p < kc; p++, d += NR) {
                            bp[d] = 0f;
                        }
                    }
                }
            }
        }
    }

    /**
     * Packs op(A)[ic : ic+mc, pc : pc+kc] into ap as [mc/mr][kc][mr], zero-padding the rows past
     * mc. op(A)[i, p] is A[i, p] (stored [M, K]) or A[p, i] (stored [K, M]).
     */
    static void packA(boolean transA, float[] A, int aOff, int lda, int ic, int mc, int pc, int kc, int mr,
                      float[] ap) {
        for (int ir = 0; ir < mc; ir += mr) {
            int rows = Math.min(mr, mc - ir);
            int dst = ir * kc; // panel ir / mr starts at (ir / mr) · kc · mr
            if (!transA) {
                for (int i = 0; i < rows; i++) {
                    int src = aOff + (ic + ir + i) * lda + pc; // A[ic + ir + i, pc]: a contiguous row
                    for (int p = 0, d = dst + i; p < kc; p++, d += mr) {
                        ap[d] = A[src + p];
                    }
                }
            } else {
                int src = aOff + pc * lda + ic + ir; // A[pc, ic + ir]: mr contiguous floats per p
                for (int p = 0, d = dst; p < kc; p++, d += mr, src += lda) {
                    for (int i = 0; i < rows; i++) {
                        ap[d + i] = A[src + i];
                    }
                }
            }
            for (int i = rows; i < mr; i++) {
                for (int p = 0, d = dst + i; p < kc; p++, d += mr) {
                    ap[d] = 0f;
                }
            }
        }
    }

    /** C[mc, nc] (from c0) gets the packed A block [mc, kc] times the packed B block [kc, nc]. */
    private void macroKernel(float[] ap, float[] bp, int kc, int mc, int nc,
                             float alpha, float beta, boolean first, float[] C, int c0, int ldc) {
        float[] tile = tiles.get();
        int panels = ceilDiv(nc, NR);
        // Groups of B panels that fit in L2 next to the A block; within one, each A panel (in L1)
        // meets every B panel, so C is walked along its rows, which hardware prefetch follows.
        int group = Math.max(1, B_SUBBLOCK_FLOATS / (kc * NR));
        for (int g0 = 0; g0 < panels; g0 += group) {
            int g1 = Math.min(panels, g0 + group);
            for (int ir = 0; ir < mc; ir += mr) {
                int rows = Math.min(mr, mc - ir);
                for (int jp = g0; jp < g1; jp++) {
                    int j0 = jp * NR;
                    if (mr == 8) {
                        microKernel8x2(kc, ap, ir * kc, bp, jp * kc * NR, tile);
                    } else {
                        microKernel4x2(kc, ap, ir * kc, bp, jp * kc * NR, tile);
                    }
                    storeTile(tile, rows, Math.min(NR, nc - j0), alpha, beta, first, C, c0 + ir * ldc + j0, ldc);
                }
            }
        }
    }

    /**
     * tile[4, NR] = ap-panel [kc][4] ⊗ bp-panel [kc][NR]: for each p, two vectors of B times each
     * of the four broadcast A values, into 8 FMA accumulators held in registers.
     *
     * <p>Why 4 × 2 vectors with 16 vector registers (AVX2): C2 issues the loads of an iteration
     * before its FMAs, so a tile of mr × 2 needs about mr + 2 + 2·mr registers. 4 × 2 needs 14;
     * 6 × 2 or 4 × 3 spill an accumulator to the stack and run at half speed (measured on Zen 3:
     * 95 against 44 GF/s). Eight independent FMA chains are also just enough to cover the FMA
     * latency (4 cycles × 2 pipes).
     */
    static void microKernel4x2(int kc, float[] ap, int a, float[] bp, int b, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, a += 4, b += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, b);
            FloatVector b1 = FloatVector.fromArray(S, bp, b + L);
            FloatVector x = FloatVector.broadcast(S, ap[a]);
            c00 = x.fma(b0, c00);
            c01 = x.fma(b1, c01);
            x = FloatVector.broadcast(S, ap[a + 1]);
            c10 = x.fma(b0, c10);
            c11 = x.fma(b1, c11);
            x = FloatVector.broadcast(S, ap[a + 2]);
            c20 = x.fma(b0, c20);
            c21 = x.fma(b1, c21);
            x = FloatVector.broadcast(S, ap[a + 3]);
            c30 = x.fma(b0, c30);
            c31 = x.fma(b1, c31);
        }
        c00.intoArray(tile, 0);
        c01.intoArray(tile, L);
        c10.intoArray(tile, NR);
        c11.intoArray(tile, NR + L);
        c20.intoArray(tile, 2 * NR);
        c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR);
        c31.intoArray(tile, 3 * NR + L);
    }

    /**
     * tile[8, NR] = ap-panel [kc][8] ⊗ bp-panel [kc][NR]: as {@link #microKernel4x2} with eight rows,
     * 16 accumulators, about 26 registers: for CPUs with 32 vector registers (AVX-512), where it
     * runs about 1.2 to 1.7 times faster than 4 × 2 (measured on a Xeon).
     */
    static void microKernel8x2(int kc, float[] ap, int a, float[] bp, int b, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        FloatVector c60 = FloatVector.zero(S), c61 = FloatVector.zero(S);
        FloatVector c70 = FloatVector.zero(S), c71 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, a += 8, b += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, b);
            FloatVector b1 = FloatVector.fromArray(S, bp, b + L);
            FloatVector x = FloatVector.broadcast(S, ap[a]);
            c00 = x.fma(b0, c00);
            c01 = x.fma(b1, c01);
            x = FloatVector.broadcast(S, ap[a + 1]);
            c10 = x.fma(b0, c10);
            c11 = x.fma(b1, c11);
            x = FloatVector.broadcast(S, ap[a + 2]);
            c20 = x.fma(b0, c20);
            c21 = x.fma(b1, c21);
            x = FloatVector.broadcast(S, ap[a + 3]);
            c30 = x.fma(b0, c30);
            c31 = x.fma(b1, c31);
            x = FloatVector.broadcast(S, ap[a + 4]);
            c40 = x.fma(b0, c40);
            c41 = x.fma(b1, c41);
            x = FloatVector.broadcast(S, ap[a + 5]);
            c50 = x.fma(b0, c50);
            c51 = x.fma(b1, c51);
            x = FloatVector.broadcast(S, ap[a + 6]);
            c60 = x.fma(b0, c60);
            c61 = x.fma(b1, c61);
            x = FloatVector.broadcast(S, ap[a + 7]);
            c70 = x.fma(b0, c70);
            c71 = x.fma(b1, c71);
        }
        c00.intoArray(tile, 0);
        c01.intoArray(tile, L);
        c10.intoArray(tile, NR);
        c11.intoArray(tile, NR + L);
        c20.intoArray(tile, 2 * NR);
        c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR);
        c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR);
        c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR);
        c51.intoArray(tile, 5 * NR + L);
        c60.intoArray(tile, 6 * NR);
        c61.intoArray(tile, 6 * NR + L);
        c70.intoArray(tile, 7 * NR);
        c71.intoArray(tile, 7 * NR + L);
    }

    /**
     * C[rows, cols] (at c0, leading dim ldc) = alpha · tile + (first ? beta · C : C); beta == 0 on
     * the first K block ignores C. The scalar edge path does the very same float operations
     * (a product, then a fused multiply-add or an add) as the vector path.
     */
    static void storeTile(float[] tile, int rows, int cols, float alpha, float beta, boolean first,
                          float[] C, int c0, int ldc) {
        boolean readC = !first || beta != 0f;
        float cScale = first ? beta : 1f;
        if (cols == NR) {
            FloatVector cScaleV = FloatVector.broadcast(S, cScale);
            for (int i = 0; i < rows; i++) {
                for (int v = 0; v < NR; v += L) {
                    int c = c0 + i * ldc + v;
                    FloatVector t = FloatVector.fromArray(S, tile, i * NR + v).mul(alpha);
                    if (readC) {
                        t = FloatVector.fromArray(S, C, c).fma(cScaleV, t);
                    }
                    t.intoArray(C, c);
                }
            }
        } else {
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < cols; j++) {
                    int c = c0 + i * ldc + j;
                    float t = tile[i * NR + j] * alpha;
                    C[c] = readC ? Math.fma(C[c], cScale, t) : t;
                }
            }
        }
    }

    /** C = beta · C, with beta == 0 writing zeros (C's old contents, even NaN, are ignored). */
    private static void scale(int M, int N, float beta, float[] C, int cOff, int ldc) {
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                int c = cOff + i * ldc + j;
                C[c] = beta == 0f ? 0f : beta * C[c];
            }
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
