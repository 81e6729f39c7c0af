package dev.shrink.kernels.cpu;

import java.util.function.IntConsumer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Blocked single-precision GEMM on the Vector API, after Goto &amp; van de Geijn ("Anatomy of
 * high-performance matrix multiplication"): C = alpha · op(A) · op(B) + beta · C, all row-major.
 *
 * <pre>
 * for jc over N in steps of NC                       B block [kc, nc] lives in L3
 *   for pc over K in steps of kc (≈ KC)             one K block; the first applies beta
 *     pack B[pc.., jc..] → bp: panels of NR columns   [nc/NR][kc][NR], zero-padded   (parallel)
 *     for each (ic block of MC rows, range of panels) task                            (parallel)
 *       pack A[ic.., pc..] → ap: panels of MR rows   [mc/MR][kc][MR], zero-padded   (per thread)
 *       for each B panel jr: for each A panel ir:
 *         micro-kernel: MR × NR accumulators += ap[ir] ⊗ bp[jr] over kc   (B panel stays in L1)
 *         C[ir.., jr..] = alpha · acc + (first ? beta · C : C)
 * </pre>
 *
 * Packing reads op(A) and op(B) through their stored layouts, so all four transpose cases run
 * the same micro-kernel on the same packed formats. Edges (M, N not multiples of MR, NR) are
 * zero-padded in the packed panels and stored with a scalar loop that performs exactly the same
 * float operations as the vector store; each C element therefore gets the same FMA chain
 * whatever tile, task or thread computes it, and results are bit-identical for any thread count.
 */
final class Sgemm {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /** Floats per vector (8 with AVX2, 16 with AVX-512). */
    static final int L = S.length();
    /** Rows of the register tile: MR rows × 2 vectors = 8 accumulators (see {@link #microKernel}). */
    static final int MR = 4;
    /** Columns of the register tile: two vectors. */
    static final int NR = 2 * L;
    /** Target depth of one K block. */
    static final int KC = 512;
    /** K up to this is done as a single block (saves a pass over C for the model's K = 384). */
    static final int KC_SINGLE_MAX = 512;
    /** Rows of A per packed block (a multiple of MR); [MC, kc] floats stay in L2. */
    static final int MC = 144;
    /** Columns of B per packed block (a multiple of NR for any vector width up to 512 bits). */
    static final int NC = 4096;
    /** Below this many multiply-adds (M·N·K) a gemm runs on the calling thread. */
    static final long PARALLEL_MIN_MACS = 1L << 18;

    private final WorkerPool workers;
    /** Per-thread packed A block: [MC/MR][kc][MR]. Instance state, never shared between threads. */
    private final ThreadLocal<float[]> aBlocks = ThreadLocal.withInitial(() -> new float[MC * KC_SINGLE_MAX]);
    /** Per-thread register tile spill: [MR, NR]. */
    private final ThreadLocal<float[]> tiles = ThreadLocal.withInitial(() -> new float[MR * NR]);

    Sgemm(WorkerPool workers) {
        this.workers = workers;
    }

    /** See {@link dev.shrink.core.ops.Ops#gemm}; arguments are checked by the caller. */
    void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
              float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
              float beta, float[] C, int cOff, int ldc) {
        if (M == 0 || N == 0) {
            return;
        }
        if (K == 0) { // op(A)·op(B) is all zeros
            scale(M, N, beta, C, cOff, ldc);
            return;
        }
        boolean parallel = workers.threads() > 1 && (long) M * N * K >= PARALLEL_MIN_MACS;
        int kBlocks = K <= KC_SINGLE_MAX ? 1 : ceilDiv(K, KC);
        int kcMax = ceilDiv(K, kBlocks); // equal-sized K blocks, ≤ KC (or K itself)
        int ncMax = Math.min(N, NC);
        float[] bp = new float[kcMax * ceilDiv(ncMax, NR) * NR]; // packed B block [nc/NR][kc][NR]
        int mBlocks = ceilDiv(M, MC);

        for (int jc = 0; jc < N; jc += NC) {
            int nc = Math.min(NC, N - jc);
            int panels = ceilDiv(nc, NR);
            // With few row blocks, also split the B panels so every thread gets several tasks.
            int nSplit = 1;
            if (parallel && mBlocks < 4 * workers.threads()) {
                nSplit = Math.min(panels, ceilDiv(4 * workers.threads(), mBlocks));
            }
            int splits = nSplit;
            for (int pc = 0; pc < K; pc += kcMax) {
                int kc = Math.min(kcMax, K - pc);
                boolean first = pc == 0;
                int jcF = jc, pcF = pc;
                int packTasks = parallel ? Math.min(panels, 4 * workers.threads()) : 1;
                run(parallel, packTasks, t -> packB(transB, B, bOff, ldb, pcF, kc, jcF, nc,
                        panels * t / packTasks, panels * (t + 1) / packTasks, bp));
                run(parallel, mBlocks * splits, t -> {
                    int ic = (t / splits) * MC;
                    int mc = Math.min(MC, M - ic);
                    int js = t % splits;
                    float[] ap = aBlocks.get();
                    packA(transA, A, aOff, lda, ic, mc, pcF, kc, ap);
                    macroKernel(ap, bp, kc, mc, nc, panels * js / splits, panels * (js + 1) / splits,
                            alpha, beta, first, C, cOff + ic * ldc + jcF, ldc);
                });
            }
        }
    }

    private void run(boolean parallel, int n, IntConsumer body) {
        if (parallel) {
            workers.forEach(n, body);
        } else {
            for (int i = 0; i < n; i++) {
                body.accept(i);
            }
        }
    }

    /**
     * Packs op(B)[pc : pc+kc, jc : jc+nc] panels [p0, p1) into bp as [panel][kc][NR], zero-padding
     * the columns past nc. op(B)[p, j] is B[p, j] (stored [K, N]) or B[j, p] (stored [N, K]).
     */
    static void packB(boolean transB, float[] B, int bOff, int ldb, int pc, int kc, int jc, int nc,
                      int p0, int p1, float[] bp) {
        for (int jp = p0; jp < p1; jp++) {
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
     * Packs op(A)[ic : ic+mc, pc : pc+kc] into ap as [mc/MR][kc][MR], zero-padding the rows past
     * mc. op(A)[i, p] is A[i, p] (stored [M, K]) or A[p, i] (stored [K, M]).
     */
    static void packA(boolean transA, float[] A, int aOff, int lda, int ic, int mc, int pc, int kc, float[] ap) {
        for (int ir = 0; ir < mc; ir += MR) {
            int rows = Math.min(MR, mc - ir);
            int dst = ir * kc; // panel ir / MR starts at (ir / MR) · kc · MR
            if (!transA) {
                for (int i = 0; i < rows; i++) {
                    int src = aOff + (ic + ir + i) * lda + pc; // A[ic + ir + i, pc]: a contiguous row
                    for (int p = 0, d = dst + i; p < kc; p++, d += MR) {
                        ap[d] = A[src + p];
                    }
                }
            } else {
                int src = aOff + pc * lda + ic + ir; // A[pc, ic + ir]: MR contiguous floats per p
                for (int p = 0, d = dst; p < kc; p++, d += MR, src += lda) {
                    for (int i = 0; i < rows; i++) {
                        ap[d + i] = A[src + i];
                    }
                }
            }
            for (int i = rows; i < MR; i++) {
                for (int p = 0, d = dst + i; p < kc; p++, d += MR) {
                    ap[d] = 0f;
                }
            }
        }
    }

    /** Multiplies the packed A block (mc rows) by packed B panels [p0, p1) into C (at its [ic, jc] corner). */
    private void macroKernel(float[] ap, float[] bp, int kc, int mc, int nc, int p0, int p1,
                             float alpha, float beta, boolean first, float[] C, int c0, int ldc) {
        float[] tile = tiles.get();
        for (int jp = p0; jp < p1; jp++) {
            int j0 = jp * NR;
            int cols = Math.min(NR, nc - j0);
            for (int ir = 0; ir < mc; ir += MR) {
                microKernel(kc, ap, ir * kc, bp, jp * kc * NR, tile);
                storeTile(tile, Math.min(MR, mc - ir), cols, alpha, beta, first, C, c0 + ir * ldc + j0, ldc);
            }
        }
    }

    /**
     * tile[MR, NR] = ap-panel [kc][MR] ⊗ bp-panel [kc][NR]: for each p, two vectors of B times
     * each of the four broadcast A values, into 8 FMA accumulators held in registers.
     *
     * <p>Why 4 × 2 vectors: C2 issues all loads of an iteration before its FMAs, so the tile needs
     * MR + 2 + 2·MR vector registers. With 16 (AVX2) only MR = 4 fits; 6 × 2 or 4 × 3 spill one
     * accumulator to the stack and run at half speed. Eight independent FMA chains are also just
     * enough to cover the FMA latency (4 cycles × 2 pipes).
     */
    static void microKernel(int kc, float[] ap, int a, float[] bp, int b, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, a += MR, b += NR) {
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
