package dev.shrink.distill;

import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cpu.LaneSums;
import dev.shrink.kernels.cpu.WorkerPool;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;

/**
 * {@link TrainOps} in float32 on the CPU: what training runs. Every matrix product, of the forward
 * and of the backward, is {@link Ops#gemm} (the Vector-API SGEMM on the "cpu" backend); the rest
 * (norms, RoPE, softmax, SwiGLU, losses, AdamW) are loops over rows, heads or elements spread over
 * the threads of a {@link WorkerPool}. Sums that decide a result (norms, log-sum-exp, losses, the
 * gradient norm) are accumulated in double. Results do not depend on the thread count nor on the
 * CPU's vector width: work items write disjoint outputs, reductions over rows follow
 * {@link LaneSums}' fixed order and reductions over chunks use fixed chunks summed in order.
 *
 * <p>Attention works on blocks of {@value #QUERY_BLOCK} queries of one head: S = Q·Kᵀ/√D over the
 * keys the block can see, P = exp(S − lse) (lse saved by the forward), two GEMMs per block forward
 * and five backward (the probabilities are recomputed, never stored: FlashAttention's trade, Dao
 * et al. 2022). Forward tasks are (sequence, head); backward tasks are (sequence, kv head), so that
 * the dK and dV of a kv head shared by several query heads (GQA) have one writer.
 */
public final class F32TrainOps implements TrainOps<float[]> {
    /** Query rows per attention block (the M of its small GEMMs). */
    static final int QUERY_BLOCK = 64;
    /** Elements per task below which element-wise work is not split. */
    private static final int GRAIN = 1 << 14;
    /** Rows per chunk of the row reductions (RMSNorm's dw, bias gradients). */
    private static final int ROW_CHUNK = 64;

    private final Ops ops;
    private final WorkerPool par;

    /**
     * @param ops     the backend whose {@link Ops#gemm} does the matrix products; it may be called
     *                from several threads at once (the CPU backends allow it)
     * @param threads threads for the row, head and element loops
     */
    public F32TrainOps(Ops ops, int threads) {
        this.ops = ops;
        this.par = new WorkerPool(threads, "shrink-train-");
    }

    /** The backend doing the GEMMs. */
    public Ops ops() {
        return ops;
    }

    @Override
    public String name() {
        return "cpu-f32 (gemm: " + ops.name() + ", " + par.threads() + " threads)";
    }

    @Override
    public float[] zeros(int n) {
        return new float[n];
    }

    @Override
    public float[] adopt(float[] values) {
        return values;
    }

    @Override
    public float[] toFloats(float[] a) {
        return a.clone();
    }

    @Override
    public int size(float[] a) {
        return a.length;
    }

    @Override
    public void copy(float[] src, float[] dst) {
        System.arraycopy(src, 0, dst, 0, src.length);
    }

    @Override
    public void zero(float[] a) {
        par.forRange(a.length, GRAIN, (i0, i1) -> Arrays.fill(a, i0, i1, 0f));
    }

    @Override
    public void add(float[] x, float[] d) {
        par.forRange(x.length, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                x[i] += d[i];
            }
        });
    }

    @Override
    public void embedForward(float[] E, int[] tokens, int C, float[] x) {
        for (int t = 0; t < tokens.length; t++) {
            System.arraycopy(E, tokens[t] * C, x, t * C, C);
        }
    }

    @Override
    public void embedBackward(float[] dx, int[] tokens, int C, float[] dE) {
        // tokens repeat, so rows of dE have several writers: split by columns instead, tokens in order
        par.forRange(C, 16, (c0, c1) -> {
            for (int t = 0; t < tokens.length; t++) {
                int e = tokens[t] * C, r = t * C;
                for (int c = c0; c < c1; c++) {
                    dE[e + c] += dx[r + c];
                }
            }
        });
    }

    @Override
    public void rmsNormForward(float[] x, float[] w, double eps, int M, int C, float[] y, float[] rstd) {
        par.forRange(M, Math.max(1, GRAIN / C), (m0, m1) -> {
            for (int m = m0; m < m1; m++) {
                int row = m * C;
                double ss = 0;
                for (int c = 0; c < C; c++) {
                    ss += (double) x[row + c] * x[row + c];
                }
                float r = (float) (1 / Math.sqrt(ss / C + eps));
                rstd[m] = r;
                for (int c = 0; c < C; c++) {
                    y[row + c] = x[row + c] * r * w[c];
                }
            }
        });
    }

    @Override
    public void rmsNormBackward(float[] dy, float[] x, float[] w, float[] rstd, int M, int C, float[] dx, float[] dw) {
        int chunks = (M + ROW_CHUNK - 1) / ROW_CHUNK;
        double[] dwParts = new double[chunks * C]; // [chunks, C]
        par.forEach(chunks, ch -> {
            int m1 = Math.min(M, (ch + 1) * ROW_CHUNK);
            for (int m = ch * ROW_CHUNK; m < m1; m++) {
                int row = m * C;
                double r = rstd[m];
                double dot = 0; // Σ_c dy·w·x
                for (int c = 0; c < C; c++) {
                    dot += (double) dy[row + c] * w[c] * x[row + c];
                    dwParts[ch * C + c] += (double) dy[row + c] * x[row + c] * r;
                }
                double k = r * r * r * dot / C;
                for (int c = 0; c < C; c++) {
                    dx[row + c] += (float) (r * dy[row + c] * w[c] - k * x[row + c]);
                }
            }
        });
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int ch = 0; ch < chunks; ch++) {
                s += dwParts[ch * C + c];
            }
            dw[c] += (float) s;
        }
    }

    @Override
    public void linearForward(float[] x, float[] W, float[] b, int M, int K, int N, float[] y) {
        ops.gemm(false, true, M, N, K, 1f, x, 0, K, W, 0, K, 0f, y, 0, N);
        if (b != null) {
            par.forRange(M, Math.max(1, GRAIN / N), (m0, m1) -> {
                for (int m = m0; m < m1; m++) {
                    for (int n = 0; n < N; n++) {
                        y[m * N + n] += b[n];
                    }
                }
            });
        }
    }

    @Override
    public void linearBackward(float[] dy, float[] x, float[] W, int M, int K, int N, float[] dx, float[] dW, float[] db) {
        // dx[M, K] += dy[M, N] · W[N, K]
        ops.gemm(false, false, M, K, N, 1f, dy, 0, N, W, 0, K, 1f, dx, 0, K);
        // dW[N, K] += dyᵀ[N, M] · x[M, K]
        ops.gemm(true, false, N, K, M, 1f, dy, 0, N, x, 0, K, 1f, dW, 0, K);
        if (db != null) {
            int chunks = (M + ROW_CHUNK - 1) / ROW_CHUNK;
            double[] parts = new double[chunks * N];
            par.forEach(chunks, ch -> {
                int m1 = Math.min(M, (ch + 1) * ROW_CHUNK);
                for (int m = ch * ROW_CHUNK; m < m1; m++) {
                    for (int n = 0; n < N; n++) {
                        parts[ch * N + n] += dy[m * N + n];
                    }
                }
            });
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int ch = 0; ch < chunks; ch++) {
                    s += parts[ch * N + n];
                }
                db[n] += (float) s;
            }
        }
    }

    @Override
    public void ropeForward(float[] x, int B, int T, int heads, int D, RopeTable rope) {
        rotate(x, B, T, heads, D, rope, false);
    }

    @Override
    public void ropeBackward(float[] dx, int B, int T, int heads, int D, RopeTable rope) {
        rotate(dx, B, T, heads, D, rope, true);
    }

    /** x1' = x1·c − x2·s, x2' = x2·c + x1·s per head half; with {@code inverse}, s → −s. */
    private void rotate(float[] x, int B, int T, int heads, int D, RopeTable rope, boolean inverse) {
        int half = D / 2;
        float[] cos = rope.cos(), sin = rope.sin();
        par.forRange(B * T, Math.max(1, GRAIN / (heads * D)), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int table = (r % T) * half; // position of row r in its sequence
                for (int h = 0; h < heads; h++) {
                    int lo = (r * heads + h) * D, hi = lo + half;
                    for (int i = 0; i < half; i++) {
                        float c = cos[table + i], s = inverse ? -sin[table + i] : sin[table + i];
                        float x1 = x[lo + i], x2 = x[hi + i];
                        x[lo + i] = x1 * c - x2 * s;
                        x[hi + i] = x2 * c + x1 * s;
                    }
                }
            }
        });
    }

    @Override
    public void attentionForward(float[] q, float[] k, float[] v, int B, int T, int H, int Hkv, int D,
                                 float[] out, float[] lse) {
        attentionForward(q, k, v, B, T, H, Hkv, D, 1 / Math.sqrt(D), 0f, out, lse);
    }

    /**
     * Scores S = Q·Kᵀ·scale (the GEMM's alpha, in float32), each visible one soft-capped to c·tanh(s/c) with c &gt; 0
     * as the evaluation's {@link dev.shrink.kernels.cpu.VectorOps} does ({@link StrictMath#tanh}: the same bits in
     * every JIT state), then the softmax.
     */
    @Override
    public void attentionForward(float[] q, float[] k, float[] v, int B, int T, int H, int Hkv, int D, double scale0,
                                 float softcap, float[] out, float[] lse) {
        int group = H / Hkv;
        float scale = (float) scale0;
        par.forEach(B * H, task -> {
            int b = task / H, h = task % H, kh = h / group;
            float[] S = new float[Math.min(QUERY_BLOCK, T) * T]; // [rows, keys]
            int kOff = (b * T * Hkv + kh) * D;
            for (int i0 = 0; i0 < T; i0 += QUERY_BLOCK) {
                int rows = Math.min(QUERY_BLOCK, T - i0), keys = i0 + rows;
                int qOff = ((b * T + i0) * H + h) * D;
                // S[rows, keys] = Q[i0.., h, :] · K[0..keys, kh, :]ᵀ / √D
                ops.gemm(false, true, rows, keys, D, scale, q, qOff, H * D, k, kOff, Hkv * D, 0f, S, 0, keys);
                for (int r = 0; r < rows; r++) {
                    int visible = i0 + r + 1, row = r * keys;
                    if (softcap > 0) {
                        for (int j = row; j < row + visible; j++) {
                            S[j] = cap(S[j], softcap);
                        }
                    }
                    // P = exp(S − max) / Σ; lse = max + log Σ
                    float max = max(S, row, visible);
                    double sum = expInPlace(S, row, visible, max);
                    lse[(b * H + h) * T + i0 + r] = (float) (max + Math.log(sum));
                    scale(S, row, visible, (float) (1 / sum));
                    Arrays.fill(S, row + visible, row + keys, 0f); // causal mask
                }
                // out[i0.., h, :] = P[rows, keys] · V[0..keys, kh, :]
                ops.gemm(false, false, rows, D, keys, 1f, S, 0, keys, v, kOff, Hkv * D, 0f, out, qOff, H * D);
            }
        });
    }

    /** c·tanh(s/c) in float32, as the evaluation's attention and logits cap it. */
    private static float cap(float s, float c) {
        return (float) StrictMath.tanh(s / c) * c;
    }

    // ---- row kernels on the Vector API (exp from FastExp: the same bits in every JIT state) ----

    private static final jdk.incubator.vector.VectorSpecies<Float> S = FastExp.S;
    private static final int L = FastExp.L;

    /** max of x[o .. o+n). */
    static float max(float[] x, int o, int n) {
        int j = 0;
        float max = Float.NEGATIVE_INFINITY;
        if (n >= L) {
            FloatVector m = FloatVector.fromArray(S, x, o);
            for (j = L; j <= n - L; j += L) {
                m = m.max(FloatVector.fromArray(S, x, o + j));
            }
            for (int k = 0; k < L; k++) {
                max = Math.max(max, m.lane(k));
            }
        }
        for (; j < n; j++) {
            max = Math.max(max, x[o + j]);
        }
        return max;
    }

    /**
     * x[o+j] = exp(x[o+j] − shift) for j &lt; n; returns Σ of the new values, in {@link LaneSums}'
     * fixed order (the same bits for every vector width).
     */
    static double expInPlace(float[] x, int o, int n, float shift) {
        FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
        int bound = LaneSums.bound(n), j = 0;
        for (; j < bound; j += LaneSums.W) {
            a0 = a0.add(expInPlace(x, o + j, shift));
            if (LaneSums.K > 1) {
                a1 = a1.add(expInPlace(x, o + j + L, shift));
            }
            if (LaneSums.K > 2) {
                a2 = a2.add(expInPlace(x, o + j + 2 * L, shift));
                a3 = a3.add(expInPlace(x, o + j + 3 * L, shift));
            }
        }
        float[] part = LaneSums.partials(a0, a1, a2, a3);
        for (; j < n; j++) {
            x[o + j] = FastExp.exp(x[o + j] - shift);
            part[j & (LaneSums.W - 1)] += x[o + j];
        }
        return LaneSums.sum(part);
    }

    /** x[i .. i+L) = exp(x[i .. i+L) − shift), returned too. */
    private static FloatVector expInPlace(float[] x, int i, float shift) {
        FloatVector e = FastExp.exp(FloatVector.fromArray(S, x, i).sub(shift));
        e.intoArray(x, i);
        return e;
    }

    /** x[o+j] *= f for j &lt; n. */
    static void scale(float[] x, int o, int n, float f) {
        int j = 0;
        for (; j <= n - L; j += L) {
            FloatVector.fromArray(S, x, o + j).mul(f).intoArray(x, o + j);
        }
        for (; j < n; j++) {
            x[o + j] *= f;
        }
    }

    @Override
    public void attentionBackward(float[] dOut, float[] q, float[] k, float[] v, float[] out, float[] lse,
                                  int B, int T, int H, int Hkv, int D, float[] dq, float[] dk, float[] dv) {
        attentionBackward(dOut, q, k, v, out, lse, B, T, H, Hkv, D, 1 / Math.sqrt(D), 0f, dq, dk, dv);
    }

    @Override
    public void attentionBackward(float[] dOut, float[] q, float[] k, float[] v, float[] out, float[] lse,
                                  int B, int T, int H, int Hkv, int D, double scale0, float softcap,
                                  float[] dq, float[] dk, float[] dv) {
        int group = H / Hkv;
        float scale = (float) scale0;
        par.forEach(B * Hkv, task -> {
            int b = task / Hkv, kh = task % Hkv;
            int blockRows = Math.min(QUERY_BLOCK, T);
            float[] P = new float[blockRows * T];  // [rows, keys]
            float[] dS = new float[blockRows * T]; // dP, then dS, [rows, keys]
            float[] dCap = softcap > 0 ? new float[blockRows * T] : null; // 1 − tanh²(s/c) of the raw scores
            int kOff = (b * T * Hkv + kh) * D;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                for (int i0 = 0; i0 < T; i0 += QUERY_BLOCK) {
                    int rows = Math.min(QUERY_BLOCK, T - i0), keys = i0 + rows;
                    int qOff = ((b * T + i0) * H + h) * D;
                    // P = exp(cap(Q·Kᵀ·scale) − lse), recomputed (equal to the forward's up to float rounding)
                    ops.gemm(false, true, rows, keys, D, scale, q, qOff, H * D, k, kOff, Hkv * D, 0f, P, 0, keys);
                    for (int r = 0; r < rows; r++) {
                        int visible = i0 + r + 1, row = r * keys;
                        if (softcap > 0) {
                            for (int j = row; j < row + visible; j++) {
                                double t = StrictMath.tanh(P[j] / softcap);
                                dCap[j] = (float) (1 - t * t);
                                P[j] = (float) t * softcap;
                            }
                        }
                        expInPlace(P, row, visible, lse[(b * H + h) * T + i0 + r]);
                        Arrays.fill(P, row + visible, row + keys, 0f);
                    }
                    // dV[0..keys] += Pᵀ · dO
                    ops.gemm(true, false, keys, D, rows, 1f, P, 0, keys, dOut, qOff, H * D, 1f, dv, kOff, Hkv * D);
                    // dP = dO · Vᵀ
                    ops.gemm(false, true, rows, keys, D, 1f, dOut, qOff, H * D, v, kOff, Hkv * D, 0f, dS, 0, keys);
                    // dS = P ⊙ (dP − rowsum(dO ⊙ O))
                    for (int r = 0; r < rows; r++) {
                        int o = qOff + r * H * D, row = r * keys;
                        double di = 0;
                        for (int d = 0; d < D; d++) {
                            di += (double) dOut[o + d] * out[o + d];
                        }
                        float fdi = (float) di;
                        for (int j = 0; j < keys; j++) {
                            dS[row + j] = P[row + j] * (dS[row + j] - fdi);
                        }
                        if (softcap > 0) {
                            for (int j = 0; j < keys; j++) {
                                dS[row + j] *= dCap[row + j]; // masked keys: P = 0 already
                            }
                        }
                    }
                    // dQ += dS · K · scale ; dK[0..keys] += dSᵀ · Q · scale
                    ops.gemm(false, false, rows, D, keys, scale, dS, 0, keys, k, kOff, Hkv * D, 1f, dq, qOff, H * D);
                    ops.gemm(true, false, keys, D, rows, scale, dS, 0, keys, q, qOff, H * D, 1f, dk, kOff, Hkv * D);
                }
            }
        });
    }

    @Override
    public void softcapForward(float[] x, float cap, int n) {
        par.forRange(n, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                x[i] = cap(x[i], cap);
            }
        });
    }

    @Override
    public void softcapBackward(float[] dy, float[] x, float cap, int n) {
        par.forRange(n, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                double t = StrictMath.tanh(x[i] / cap);
                dy[i] = (float) (dy[i] * (1 - t * t));
            }
        });
    }

    @Override
    public void swigluForward(float[] g, float[] u, int n, float[] out) {
        // chunks start at multiples of the vector width, so the scalar tail is the same whatever the split
        int vectors = (n + L - 1) / L;
        par.forRange(vectors, GRAIN / L, (v0, v1) -> {
            int i = v0 * L, end = Math.min(n, v1 * L);
            for (; i <= end - L; i += L) {
                FloatVector x = FloatVector.fromArray(S, g, i);
                x.mul(oneOver(FastExp.exp(x.neg()).add(1f))).mul(FloatVector.fromArray(S, u, i)).intoArray(out, i);
            }
            for (; i < end; i++) {
                float x = g[i];
                out[i] = x * (1f / (1f + FastExp.exp(-x))) * u[i];
            }
        });
    }

    /** 1 / v per lane. */
    private static FloatVector oneOver(FloatVector v) {
        return FloatVector.broadcast(S, 1f).div(v);
    }

    @Override
    public void swigluBackward(float[] dOut, float[] g, float[] u, int n, float[] dg, float[] du) {
        int vectors = (n + L - 1) / L;
        par.forRange(vectors, GRAIN / L, (v0, v1) -> {
            int i = v0 * L, end = Math.min(n, v1 * L);
            for (; i <= end - L; i += L) {
                FloatVector x = FloatVector.fromArray(S, g, i);
                FloatVector sig = oneOver(FastExp.exp(x.neg()).add(1f));
                FloatVector d = FloatVector.fromArray(S, dOut, i);
                // dg += dOut·u·σ·(1 + x·(1 − σ)); du += dOut·x·σ
                FloatVector dsilu = sig.mul(x.mul(sig.neg().add(1f)).add(1f));
                d.mul(FloatVector.fromArray(S, u, i)).mul(dsilu).add(FloatVector.fromArray(S, dg, i)).intoArray(dg, i);
                d.mul(x).mul(sig).add(FloatVector.fromArray(S, du, i)).intoArray(du, i);
            }
            for (; i < end; i++) {
                float x = g[i];
                float sig = 1f / (1f + FastExp.exp(-x));
                dg[i] += dOut[i] * u[i] * (sig * (x * (1f - sig) + 1f));
                du[i] += dOut[i] * x * sig;
            }
        });
    }

    private static final float GELU_C2 = (float) (2 * Math.sqrt(2 / Math.PI)), GELU_K = 0.044715f;

    /** gelu_tanh(x) = x·σ(2a) in float32 (as the evaluation's GeGLU), element by element in parallel chunks. */
    @Override
    public void gegluForward(float[] g, float[] u, int n, float[] out) {
        par.forRange(n, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                float x = g[i];
                out[i] = x / (1f + FastExp.exp(-(x * x * x * GELU_K + x) * GELU_C2)) * u[i];
            }
        });
    }

    @Override
    public void gegluBackward(float[] dOut, float[] g, float[] u, int n, float[] dg, float[] du) {
        par.forRange(n, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                float x = g[i];
                float s = 1f / (1f + FastExp.exp(-(x * x * x * GELU_K + x) * GELU_C2));
                float dgelu = s + x * s * (1f - s) * GELU_C2 * (1f + 3f * GELU_K * x * x);
                dg[i] += dOut[i] * u[i] * dgelu;
                du[i] += dOut[i] * x * s;
            }
        });
    }

    /**
     * {@link Losses#row} in float32 vectors, row by row in parallel: the same formulas (log-softmax
     * with the max subtracted, the KL or reverse KL at temperature T, the cross-entropy at T = 1),
     * with exp from {@link FastExp} and the sums over the vocabulary accumulated per lane and added
     * in double. Tested against the float64 specification.
     */
    @Override
    public Losses.Sums distillLoss(float[] zs, float[] zt, int[] targets, Losses.Kind kind, double temperature,
                                   int M, int V, double klScale, double ceScale, float[] dzs) {
        double[] klRow = new double[M], ceRow = new double[M];
        par.forRange(M, 1, (m0, m1) -> {
            float[] lq = new float[V], q = new float[V], lp = new float[V], p = new float[V];
            for (int m = m0; m < m1; m++) {
                int o = m * V, target = targets == null ? -1 : targets[m];
                float kl = (float) (klScale * temperature), ce = (float) ceScale;
                boolean atT = false;
                if (klScale != 0) {
                    logSoftmax(zs, o, V, (float) (1 / temperature), lq, q);
                    logSoftmax(zt, o, V, (float) (1 / temperature), lp, p);
                    atT = true;
                    if (kind == Losses.Kind.KL) {
                        klRow[m] = temperature * temperature * dotDiff(p, lp, lq, V);   // Σ p (log p − log q)
                        for (int j = 0; j < V; j++) {
                            lp[j] = kl * (q[j] - p[j]);                                // the gradient, into lp
                        }
                    } else {
                        double d = dotDiff(q, lq, lp, V);                               // Σ q (log q − log p)
                        klRow[m] = temperature * temperature * d;
                        float fd = (float) d;
                        for (int j = 0; j < V; j++) {
                            lp[j] = kl * q[j] * (lq[j] - lp[j] - fd);
                        }
                    }
                } else {
                    Arrays.fill(lp, 0f);
                }
                if (ceScale != 0 && target >= 0) {
                    if (!(atT && temperature == 1)) {
                        logSoftmax(zs, o, V, 1f, lq, q);
                    }
                    ceRow[m] = -lq[target];
                    for (int j = 0; j < V; j++) {
                        lp[j] += ce * q[j];
                    }
                    lp[target] -= ce;
                }
                if (dzs == zs) {
                    System.arraycopy(lp, 0, dzs, o, V);
                } else {
                    for (int j = 0; j < V; j++) {
                        dzs[o + j] += lp[j];
                    }
                }
            }
        });
        double kl = 0, ce = 0;
        long klRows = 0, ceRows = 0;
        for (int m = 0; m < M; m++) {
            if (klScale != 0) {
                kl += klRow[m];
                klRows++;
            }
            if (ceScale != 0 && targets != null && targets[m] >= 0) {
                ce += ceRow[m];
                ceRows++;
            }
        }
        return new Losses.Sums(kl, klRows, ce, ceRows);
    }

    /** logOut = log softmax(z[o..o+V) · scale), probOut = softmax of the same. */
    static void logSoftmax(float[] z, int o, int V, float scale, float[] logOut, float[] probOut) {
        int j = 0;
        for (; j <= V - L; j += L) {
            FloatVector.fromArray(S, z, o + j).mul(scale).intoArray(logOut, j);
        }
        for (; j < V; j++) {
            logOut[j] = z[o + j] * scale;
        }
        float max = max(logOut, 0, V);
        System.arraycopy(logOut, 0, probOut, 0, V);
        double sum = expInPlace(probOut, 0, V, max);
        float lse = (float) (max + Math.log(sum)), inv = (float) (1 / sum);
        for (j = 0; j <= V - L; j += L) {
            FloatVector.fromArray(S, logOut, j).sub(lse).intoArray(logOut, j);
            FloatVector.fromArray(S, probOut, j).mul(inv).intoArray(probOut, j);
        }
        for (; j < V; j++) {
            logOut[j] -= lse;
            probOut[j] *= inv;
        }
    }

    /** Σ_j w[j]·(a[j] − b[j]): each term fused into its partial in float, in {@link LaneSums}' fixed order. */
    static double dotDiff(float[] w, float[] a, float[] b, int V) {
        FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
        int bound = LaneSums.bound(V), j = 0;
        for (; j < bound; j += LaneSums.W) {
            a0 = fmaDiff(w, a, b, j, a0);
            if (LaneSums.K > 1) {
                a1 = fmaDiff(w, a, b, j + L, a1);
            }
            if (LaneSums.K > 2) {
                a2 = fmaDiff(w, a, b, j + 2 * L, a2);
                a3 = fmaDiff(w, a, b, j + 3 * L, a3);
            }
        }
        float[] part = LaneSums.partials(a0, a1, a2, a3);
        for (; j < V; j++) {
            part[j & (LaneSums.W - 1)] = Math.fma(a[j] - b[j], w[j], part[j & (LaneSums.W - 1)]);
        }
        return LaneSums.sum(part);
    }

    /** acc + (a − b)·w over [j, j+L), fused. */
    private static FloatVector fmaDiff(float[] w, float[] a, float[] b, int j, FloatVector acc) {
        FloatVector d = FloatVector.fromArray(S, a, j).sub(FloatVector.fromArray(S, b, j));
        return d.fma(FloatVector.fromArray(S, w, j), acc);
    }

    @Override
    public double squaredError(float[] a, float[] b, int n, double scale, float[] da) {
        return par.sum(n, 1 << 14, (i0, i1) -> {
            double s = 0;
            for (int i = i0; i < i1; i++) {
                double d = (double) a[i] - b[i];
                s += d * d;
                if (da != null) {
                    da[i] += (float) (scale * 2 * d);
                }
            }
            return s;
        });
    }

    @Override
    public double sumSquares(float[] a) {
        return par.sum(a.length, 1 << 14, (i0, i1) -> {
            double s = 0;
            for (int i = i0; i < i1; i++) {
                s += (double) a[i] * a[i];
            }
            return s;
        });
    }

    @Override
    public void scale(float[] a, double s) {
        float f = (float) s;
        par.forRange(a.length, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                a[i] *= f;
            }
        });
    }

    @Override
    public void adamw(float[] p, float[] g, float[] m, float[] v, AdamW.Step step) {
        double decay = step.decay(), b1 = step.h().beta1(), b2 = step.h().beta2();
        double stepSize = step.stepSize(), bc2 = step.bias2Sqrt(), eps = step.h().eps();
        par.forRange(p.length, GRAIN, (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                double gi = g[i];
                double pi = p[i] * decay;
                double mi = m[i] + (gi - m[i]) * (1 - b1);
                double vi = v[i] * b2 + (1 - b2) * gi * gi;
                m[i] = (float) mi;
                v[i] = (float) vi;
                p[i] = (float) (pi - stepSize * mi / (Math.sqrt(vi) / bc2 + eps));
            }
        });
    }

    @Override
    public void zeroAt(float[] a, int[] idx) {
        for (int i : idx) {
            a[i] = 0f;
        }
    }
}
