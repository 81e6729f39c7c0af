package dev.shrink.distill;

import dev.shrink.kernels.cuda.Cuda;
import dev.shrink.kernels.cuda.CublasHandle;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaKernel;
import dev.shrink.kernels.cuda.CudaModule;
import dev.shrink.kernels.cuda.DeviceBuffer;
import dev.shrink.kernels.cuda.GemmMath;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@link TrainOps} on one NVIDIA GPU over device-resident float32 arrays ({@link Array}): the
 * matrix products through cuBLAS (float32, or TF32 tensor-core products: {@link GemmMath}), the
 * other ops as the kernels of {@code train.cu}. Weights, gradients, Adam moments and activations
 * stay on the device; tokens go up, and per call of {@link #distillLoss}, {@link #squaredError} and
 * {@link #sumSquares} a few scalars (per-row or per-block partial sums, added here in order) come
 * down. All work is ordered on the device's one stream; results do not depend on timing (no
 * atomics: the embedding's backward runs one block per distinct token, column sums by fixed chunks).
 *
 * <p>Attention as {@link F32TrainOps} does it, per sequence with the [H, T, T] scores materialised
 * (cuBLAS strided-batched GEMMs over the KV heads, once per query head of a group): the forward
 * saves the log-sum-exp of each row, the backward recomputes P = exp(S − lse) and runs
 * dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)), dQ += dS·K/√D, dK += dSᵀ·Q/√D.
 *
 * <p>Memory: arrays made between {@link #beginStep()} and {@link #endStep()} (a step's activations)
 * go back to a pool by size at {@link #endStep()} and are reused by the next step, so a training
 * step allocates nothing from the driver once the first has run; arrays made outside a step
 * (parameters, gradients, moments) live until {@link #close()}. Not thread-safe: one thread drives it.
 */
public final class CudaTrainOps implements TrainOps<CudaTrainOps.Array>, AutoCloseable {
    /** Threads of the element-wise kernels' blocks. */
    private static final int THREADS = 256;
    /** Blocks of the reductions (sumSquares, squaredError): their partial sums come down. */
    private static final int REDUCE_BLOCKS = 256;
    /** Rows per chunk of the column sums (RMSNorm's dw, bias gradients). */
    private static final int ROW_CHUNK = 64;

    /** A float32 array on the device: n elements in a buffer of its own. */
    public static final class Array {
        private DeviceBuffer buf;
        private final int n;

        private Array(DeviceBuffer buf, int n) {
            this.buf = buf;
            this.n = n;
        }

        /** The device address of element 0. */
        public long address() {
            if (buf == null) {
                throw new IllegalStateException("device array of " + n + " floats used after its step ended");
            }
            return buf.address();
        }

        /** The number of elements. */
        public int length() {
            return n;
        }
    }

    private final CudaDevice device;
    private final boolean ownsDevice;
    private final GemmMath math;
    private final CublasHandle blas;
    private final CudaModule module;
    private final CudaKernel add, scale, zeroAt, embedFwd, embedBwd, rmsFwd, rmsBwdDx, colPartial, colReduce, addBias,
            rope, softmaxLse, probs, rowdot, dsoftmax, swigluFwd, swigluBwd, loss, squaredError, sumSquares, adamw;
    /** Free buffers by size in bytes. */
    private final Map<Long, ArrayDeque<DeviceBuffer>> pool = new HashMap<>();
    /** Every buffer this object allocated (freed on close). */
    private final List<DeviceBuffer> owned = new ArrayList<>();
    /** The arrays of the current step, or null outside a step. */
    private List<Array> stepArrays;
    /** Uploaded constants by the identity of their host object (mask indices, RoPE tables). */
    private final Map<Object, DeviceBuffer> constants = new IdentityHashMap<>();
    private final DeviceBuffer partials;
    private boolean closed;

    /**
     * Ops on {@code device} (its stream, a cuBLAS handle of their own).
     *
     * @param math the GEMMs' arithmetic
     */
    public CudaTrainOps(CudaDevice device, GemmMath math) {
        this(device, math, false);
    }

    private CudaTrainOps(CudaDevice device, GemmMath math, boolean ownsDevice) {
        this.device = device;
        this.math = java.util.Objects.requireNonNull(math);
        this.ownsDevice = ownsDevice;
        this.blas = device.openCublas();
        this.module = device.module("train.cu");
        add = module.kernel("t_add");
        scale = module.kernel("t_scale");
        zeroAt = module.kernel("t_zero_at");
        embedFwd = module.kernel("t_embed_fwd");
        embedBwd = module.kernel("t_embed_bwd");
        rmsFwd = module.kernel("t_rms_fwd");
        rmsBwdDx = module.kernel("t_rms_bwd_dx");
        colPartial = module.kernel("t_col_partial");
        colReduce = module.kernel("t_col_reduce_add");
        addBias = module.kernel("t_add_bias");
        rope = module.kernel("t_rope");
        softmaxLse = module.kernel("t_softmax_lse");
        probs = module.kernel("t_probs");
        rowdot = module.kernel("t_rowdot");
        dsoftmax = module.kernel("t_dsoftmax");
        swigluFwd = module.kernel("t_swiglu_fwd");
        swigluBwd = module.kernel("t_swiglu_bwd");
        loss = module.kernel("t_distill_loss");
        squaredError = module.kernel("t_squared_error");
        sumSquares = module.kernel("t_sum_squares");
        adamw = module.kernel("t_adamw");
        partials = device.alloc(REDUCE_BLOCKS * 8L);
    }

    /**
     * Opens GPU {@code ordinal} for training (closed with this object).
     *
     * @throws dev.shrink.kernels.cuda.CudaException "CUDA not available: ..." or the failing call
     */
    public static CudaTrainOps open(int ordinal, GemmMath math) {
        CudaDevice d = Cuda.get().open(ordinal);
        try {
            return new CudaTrainOps(d, math, true);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    public CudaDevice device() {
        return device;
    }

    public GemmMath math() {
        return math;
    }

    /** Whether train.cu came from the cubin cache, and NVRTC's time otherwise. */
    public CudaModule module() {
        return module;
    }

    @Override
    public String name() {
        return "cuda (" + device.describe() + ", " + math.label() + ")";
    }

    // ---------------------------------------------------------------- memory

    @Override
    public void beginStep() {
        if (stepArrays == null) {
            stepArrays = new ArrayList<>();
        }
    }

    @Override
    public void endStep() {
        if (stepArrays == null) {
            return;
        }
        for (Array a : stepArrays) {
            if (a.buf != null) {
                pool.computeIfAbsent(a.buf.bytes(), k -> new ArrayDeque<>()).push(a.buf);
                a.buf = null;
            }
        }
        stepArrays = null;
    }

    /** An array of n uninitialised floats (a step's, when inside one). */
    private Array raw(int n) {
        if (closed) {
            throw new IllegalStateException("CudaTrainOps used after close");
        }
        if (n < 0) {
            throw new IllegalArgumentException("device array of " + n + " floats");
        }
        long bytes = Math.max(1, n) * 4L;
        ArrayDeque<DeviceBuffer> free = pool.get(bytes);
        DeviceBuffer b = free == null || free.isEmpty() ? null : free.pop();
        if (b == null) {
            b = device.alloc(bytes);
            owned.add(b);
        }
        Array a = new Array(b, n);
        if (stepArrays != null) {
            stepArrays.add(a);
        }
        return a;
    }

    /** n ints on the device, holding {@code values} (a step's array when inside one). */
    private Array ints(int[] values) {
        Array a = raw(values.length);
        if (values.length > 0) {
            device.upload(MemorySegment.ofArray(values), a.buf, 0);
        }
        return a;
    }

    /** A constant uploaded once per host object (kept until close). */
    private DeviceBuffer constant(Object key, float[] floats, int[] ints) {
        DeviceBuffer b = constants.get(key);
        if (b == null) {
            long n = floats != null ? floats.length : ints.length;
            b = device.alloc(Math.max(1, n) * 4L);
            owned.add(b);
            if (n > 0) {
                device.upload(floats != null ? MemorySegment.ofArray(floats) : MemorySegment.ofArray(ints), b, 0);
            }
            constants.put(key, b);
        }
        return b;
    }

    @Override
    public Array zeros(int n) {
        Array a = raw(n);
        device.fill32(a.buf, 0, Math.max(1, n));
        return a;
    }

    /** Fills every element with NaN (tests poison outputs with it). */
    public void fillNaN(Array a) {
        device.fill32(a.buf, 0x7fc00000, Math.max(1, a.n));
    }

    @Override
    public Array adopt(float[] values) {
        Array a = raw(values.length);
        if (values.length > 0) {
            device.upload(MemorySegment.ofArray(values), a.buf, 0);
        }
        return a;
    }

    @Override
    public float[] toFloats(Array a) {
        float[] out = new float[a.n];
        if (a.n > 0) {
            device.download(live(a), 0, MemorySegment.ofArray(out));
        }
        return out;
    }

    /** Copies {@code values} into the device array (same length). */
    public void upload(float[] values, Array dst) {
        sameSize(values.length, dst.n, "upload");
        if (values.length > 0) {
            device.upload(MemorySegment.ofArray(values), live(dst), 0);
        }
    }

    @Override
    public int size(Array a) {
        return a.n;
    }

    @Override
    public void copy(Array src, Array dst) {
        sameSize(src.n, dst.n, "copy");
        device.copy(live(src), 0, live(dst), 0, src.n * 4L);
    }

    @Override
    public void zero(Array a) {
        device.fill32(live(a), 0, Math.max(1, a.n));
    }

    @Override
    public void add(Array x, Array d) {
        sameSize(x.n, d.n, "add");
        elementwise(add, x.n, x.address(), d.address(), (long) x.n);
    }

    // ---------------------------------------------------------------- embedding

    @Override
    public void embedForward(Array E, int[] tokens, int C, Array x) {
        Array ids = ints(tokens);
        try {
            long n = (long) tokens.length * C;
            embedFwd.launch(blocks(n), 1, THREADS, 0, E.address(), ids.address(), x.address(), (long) tokens.length, C);
        } finally {
            release(ids);
        }
    }

    @Override
    public void embedBackward(Array dx, int[] tokens, int C, Array dE) {
        int M = tokens.length;
        if (M == 0) {
            return;
        }
        // the positions of each distinct token, ascending: a counting sort by token id
        int max = 0;
        for (int t : tokens) {
            max = Math.max(max, t);
        }
        int[] count = new int[max + 2];
        for (int t : tokens) {
            count[t + 1]++;
        }
        int U = 0;
        for (int v = 0; v <= max; v++) {
            if (count[v + 1] > 0) {
                U++;
            }
            count[v + 1] += count[v];
        }
        int[] plan = new int[2 * U + 1 + M];
        int[] fill = count.clone();
        for (int m = 0; m < M; m++) {
            plan[2 * U + 1 + fill[tokens[m]]++] = m;
        }
        int u = 0;
        for (int v = 0; v <= max; v++) {
            if (count[v + 1] > count[v]) {
                plan[u] = v;
                plan[U + u] = count[v];
                u++;
            }
        }
        plan[2 * U] = M;
        Array p = ints(plan);
        try {
            embedBwd.launch(Math.min(U, 65535), 1, rowThreads(C), 0, dx.address(), p.address(), U, dE.address(), C);
        } finally {
            release(p);
        }
    }

    // ---------------------------------------------------------------- RMSNorm

    @Override
    public void rmsNormForward(Array x, Array w, double eps, int M, int C, Array y, Array rstd) {
        rmsFwd.launch(M, 1, rowThreads(C), 0, x.address(), w.address(), y.address(), rstd.address(), C,
                Double.doubleToRawLongBits(eps));
    }

    @Override
    public void rmsNormBackward(Array dy, Array x, Array w, Array rstd, int M, int C, Array dx, Array dw) {
        rmsBwdDx.launch(M, 1, rowThreads(C), 0, dy.address(), x.address(), w.address(), rstd.address(), dx.address(), C);
        columnSums(dy.address(), x.address(), rstd.address(), M, C, dw);
    }

    /** out[c] += Σ_m dy[m, c]·x[m, c]·rstd[m] (rstd 0: Σ_m dy[m, c]), by chunks of rows summed in order. */
    private void columnSums(long dy, long x, long rstd, int M, int C, Array out) {
        int chunks = (M + ROW_CHUNK - 1) / ROW_CHUNK;
        Array part = raw(chunks * C * 2); // doubles
        try {
            colPartial.launch((C + THREADS - 1) / THREADS, chunks, THREADS, 0, dy, x, rstd, (long) M, C, ROW_CHUNK,
                    part.address());
            colReduce.launch((C + THREADS - 1) / THREADS, 1, THREADS, 0, part.address(), chunks, C, out.address());
        } finally {
            release(part);
        }
    }

    // ---------------------------------------------------------------- linear

    private void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, int lda, long B, int ldb,
                      float beta, long C, int ldc) {
        if (math == GemmMath.FP32) {
            blas.sgemmRowMajor(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        } else {
            blas.gemmRowMajor(math, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        }
    }

    @Override
    public void linearForward(Array x, Array W, Array b, int M, int K, int N, Array y) {
        gemm(false, true, M, N, K, 1f, x.address(), K, W.address(), K, 0f, y.address(), N);
        if (b != null) {
            addBias.launch(blocks((long) M * N), 1, THREADS, 0, y.address(), b.address(), (long) M, N);
        }
    }

    @Override
    public void linearBackward(Array dy, Array x, Array W, int M, int K, int N, Array dx, Array dW, Array db) {
        // dx[M, K] += dy[M, N] · W[N, K]; dW[N, K] += dyᵀ · x
        gemm(false, false, M, K, N, 1f, dy.address(), N, W.address(), K, 1f, dx.address(), K);
        gemm(true, false, N, K, M, 1f, dy.address(), N, x.address(), K, 1f, dW.address(), K);
        if (db != null) {
            columnSums(dy.address(), 0L, 0L, M, N, db);
        }
    }

    // ---------------------------------------------------------------- RoPE

    @Override
    public void ropeForward(Array x, int B, int T, int heads, int D, RopeTable table) {
        rotate(x, B, T, heads, D, table, 1f);
    }

    @Override
    public void ropeBackward(Array dx, int B, int T, int heads, int D, RopeTable table) {
        rotate(dx, B, T, heads, D, table, -1f);
    }

    private void rotate(Array x, int B, int T, int heads, int D, RopeTable table, float sign) {
        if (T > table.positions()) {
            throw new IllegalArgumentException("T = " + T + " exceeds the RoPE table of " + table.positions());
        }
        DeviceBuffer cos = constant(table.cos(), table.cos(), null), sin = constant(table.sin(), table.sin(), null);
        long rows = (long) B * T;
        rope.launch(blocks(rows * heads * (D / 2)), 1, THREADS, 0, x.address(), cos.address(), sin.address(), rows,
                heads, D, T, sign);
    }

    // ---------------------------------------------------------------- attention

    @Override
    public void attentionForward(Array q, Array k, Array v, int B, int T, int H, int Hkv, int D, Array out, Array lse) {
        int g = H / Hkv, qDim = H * D, kvDim = Hkv * D;
        float sc = (float) (1 / Math.sqrt(D));
        long TT = (long) T * T;
        Array scores = raw((int) (H * TT));
        try {
            long S = scores.address();
            for (int b = 0; b < B; b++) {
                long qb = q.address() + 4L * b * T * qDim, kb = k.address() + 4L * b * T * kvDim;
                long vb = v.address() + 4L * b * T * kvDim, ob = out.address() + 4L * b * T * qDim;
                for (int r = 0; r < g; r++) {
                    // heads h = j·g + r of kv heads j: S_h[T, T] = Q_h · K_jᵀ / √D
                    blas.gemmStridedBatchedRowMajor(math, false, true, T, T, D, sc, qb + 4L * r * D, qDim, (long) g * D,
                            kb, kvDim, D, 0f, S + 4L * r * TT, T, g * TT, Hkv);
                }
                softmaxLse.launch(H * T, 1, rowThreads(T), 0, S, lse.address() + 4L * b * H * T, T);
                for (int r = 0; r < g; r++) {
                    // O_h[T, D] = P_h · V_j
                    blas.gemmStridedBatchedRowMajor(math, false, false, T, D, T, 1f, S + 4L * r * TT, T, g * TT,
                            vb, kvDim, D, 0f, ob + 4L * r * D, qDim, (long) g * D, Hkv);
                }
            }
        } finally {
            release(scores);
        }
    }

    @Override
    public void attentionBackward(Array dOut, Array q, Array k, Array v, Array out, Array lse, int B, int T, int H,
                                  int Hkv, int D, Array dq, Array dk, Array dv) {
        int g = H / Hkv, qDim = H * D, kvDim = Hkv * D;
        float sc = (float) (1 / Math.sqrt(D));
        long TT = (long) T * T;
        Array pBuf = raw((int) (H * TT)), dpBuf = raw((int) (H * TT)), di = raw(B * H * T);
        try {
            rowdot.launch(blocks((long) B * T * H), 1, THREADS, 0, dOut.address(), out.address(), di.address(), B, T, H, D);
            long P = pBuf.address(), dP = dpBuf.address();
            for (int b = 0; b < B; b++) {
                long off = (long) b * T;
                long qb = q.address() + 4L * off * qDim, kb = k.address() + 4L * off * kvDim;
                long vb = v.address() + 4L * off * kvDim, dob = dOut.address() + 4L * off * qDim;
                long dqb = dq.address() + 4L * off * qDim, dkb = dk.address() + 4L * off * kvDim;
                long dvb = dv.address() + 4L * off * kvDim;
                long lseb = lse.address() + 4L * b * H * T, dib = di.address() + 4L * b * H * T;
                for (int r = 0; r < g; r++) {
                    // S_h = Q_h·K_jᵀ/√D, then P = exp(S − lse) in place
                    blas.gemmStridedBatchedRowMajor(math, false, true, T, T, D, sc, qb + 4L * r * D, qDim, (long) g * D,
                            kb, kvDim, D, 0f, P + 4L * r * TT, T, g * TT, Hkv);
                }
                probs.launch(blocks(H * TT), 1, THREADS, 0, P, lseb, T, H * TT);
                for (int r = 0; r < g; r++) {
                    // dV_j += P_hᵀ · dO_h
                    blas.gemmStridedBatchedRowMajor(math, true, false, T, D, T, 1f, P + 4L * r * TT, T, g * TT,
                            dob + 4L * r * D, qDim, (long) g * D, 1f, dvb, kvDim, D, Hkv);
                    // dP_h = dO_h · V_jᵀ
                    blas.gemmStridedBatchedRowMajor(math, false, true, T, T, D, 1f, dob + 4L * r * D, qDim, (long) g * D,
                            vb, kvDim, D, 0f, dP + 4L * r * TT, T, g * TT, Hkv);
                }
                dsoftmax.launch(blocks(H * TT), 1, THREADS, 0, P, dP, dib, T, H * TT);
                for (int r = 0; r < g; r++) {
                    // dQ_h += dS_h · K_j / √D
                    blas.gemmStridedBatchedRowMajor(math, false, false, T, D, T, sc, dP + 4L * r * TT, T, g * TT,
                            kb, kvDim, D, 1f, dqb + 4L * r * D, qDim, (long) g * D, Hkv);
                    // dK_j += dS_hᵀ · Q_h / √D
                    blas.gemmStridedBatchedRowMajor(math, true, false, T, D, T, sc, dP + 4L * r * TT, T, g * TT,
                            qb + 4L * r * D, qDim, (long) g * D, 1f, dkb, kvDim, D, Hkv);
                }
            }
        } finally {
            release(pBuf);
            release(dpBuf);
            release(di);
        }
    }

    // ---------------------------------------------------------------- SwiGLU

    /** Not on the GPU yet: {@link DistillRun} refuses Gemma on {@code --device cuda} before training. */
    @Override
    public void gegluForward(Array g, Array u, int n, Array out) {
        throw new UnsupportedOperationException("GeGLU has no CUDA training kernel yet");
    }

    @Override
    public void gegluBackward(Array dOut, Array g, Array u, int n, Array dg, Array du) {
        throw new UnsupportedOperationException("GeGLU has no CUDA training kernel yet");
    }

    @Override
    public void swigluForward(Array g, Array u, int n, Array out) {
        elementwise(swigluFwd, n, g.address(), u.address(), out.address(), (long) n);
    }

    @Override
    public void swigluBackward(Array dOut, Array g, Array u, int n, Array dg, Array du) {
        elementwise(swigluBwd, n, dOut.address(), g.address(), u.address(), dg.address(), du.address(), (long) n);
    }

    // ---------------------------------------------------------------- losses

    @Override
    public Losses.Sums distillLoss(Array zs, Array zt, int[] targets, Losses.Kind kind, double temperature, int M, int V,
                                   double klScale, double ceScale, Array dzs) {
        int[] tg = targets;
        if (tg == null) {
            tg = new int[M];
            java.util.Arrays.fill(tg, -1);
        } else {
            for (int t : tg) {
                if (t >= V) {
                    throw new IllegalArgumentException("target " + t + " outside the vocabulary of " + V);
                }
            }
        }
        float kl = (float) (klScale * temperature), ce = (float) ceScale;
        if (klScale != 0 && zt == null) {
            throw new IllegalArgumentException("the KL needs the teacher's logits");
        }
        Array t = ints(tg), klRow = raw(2 * M), ceRow = raw(2 * M);
        try {
            loss.launch(M, 1, 512, 0, zs.address(), zt == null ? 0L : zt.address(), t.address(), dzs.address(),
                    klRow.address(), ceRow.address(), V, (float) (1 / temperature), kind == Losses.Kind.REVERSE_KL ? 1 : 0,
                    kl, ce, dzs == zs ? 1 : 0, Double.doubleToRawLongBits(temperature * temperature));
            double[] klr = doubles(klRow, M), cer = doubles(ceRow, M);
            double kls = 0, ces = 0;
            long klRows = 0, ceRows = 0;
            for (int m = 0; m < M; m++) {
                if (klScale != 0) {
                    kls += klr[m];
                    klRows++;
                }
                if (ceScale != 0 && targets != null && targets[m] >= 0) {
                    ces += cer[m];
                    ceRows++;
                }
            }
            return new Losses.Sums(kls, klRows, ces, ceRows);
        } finally {
            release(t);
            release(klRow);
            release(ceRow);
        }
    }

    @Override
    public double squaredError(Array a, Array b, int n, double scale, Array da) {
        squaredError.launch(reduceBlocks(n), 1, THREADS, 0, a.address(), b.address(), da == null ? 0L : da.address(),
                (long) n, Double.doubleToRawLongBits(scale * 2), partials.address());
        return sumPartials(reduceBlocks(n));
    }

    // ---------------------------------------------------------------- optimizer

    @Override
    public double sumSquares(Array a) {
        sumSquares.launch(reduceBlocks(a.n), 1, THREADS, 0, a.address(), (long) a.n, partials.address());
        return sumPartials(reduceBlocks(a.n));
    }

    @Override
    public void scale(Array a, double s) {
        elementwise(scale, a.n, a.address(), (float) s, (long) a.n);
    }

    @Override
    public void adamw(Array p, Array g, Array m, Array v, AdamW.Step step) {
        elementwise(adamw, p.n, p.address(), g.address(), m.address(), v.address(), (long) p.n,
                bits(step.decay()), bits(step.h().beta1()), bits(step.h().beta2()), bits(step.stepSize()),
                bits(step.bias2Sqrt()), bits(step.h().eps()));
    }

    @Override
    public void zeroAt(Array a, int[] idx) {
        if (idx.length == 0) {
            return;
        }
        DeviceBuffer d = constant(idx, null, idx);
        elementwise(zeroAt, idx.length, a.address(), d.address(), (long) idx.length);
    }

    // ---------------------------------------------------------------- helpers

    private static long bits(double d) {
        return Double.doubleToRawLongBits(d);
    }

    private void elementwise(CudaKernel kernel, long n, Object... args) {
        if (n > 0) {
            kernel.launch(blocks(n), 1, THREADS, 0, args);
        }
    }

    private static int reduceBlocks(long n) {
        return (int) Math.max(1, Math.min(REDUCE_BLOCKS, (n + THREADS - 1) / THREADS));
    }

    /** Waits for the stream; Σ of the first {@code blocks} partial sums, in order. */
    private double sumPartials(int blocks) {
        double[] p = new double[blocks];
        device.download(partials, 0, MemorySegment.ofArray(p));
        double s = 0;
        for (double x : p) {
            s += x;
        }
        return s;
    }

    /** Waits for the stream; the first n doubles of a (an array of 2n floats). */
    private double[] doubles(Array a, int n) {
        double[] out = new double[n];
        if (n > 0) {
            device.download(live(a), 0, MemorySegment.ofArray(out));
        }
        return out;
    }

    /** Gives a scratch array back early (it is a step's array anyway when inside one). */
    private void release(Array a) {
        if (a.buf == null) {
            return;
        }
        if (stepArrays != null) {
            return; // endStep returns it
        }
        pool.computeIfAbsent(a.buf.bytes(), k -> new ArrayDeque<>()).push(a.buf);
        a.buf = null;
    }

    private static DeviceBuffer live(Array a) {
        if (a.buf == null) {
            throw new IllegalStateException("device array of " + a.n + " floats used after its step ended");
        }
        return a.buf;
    }

    private static void sameSize(int a, int b, String what) {
        if (a != b) {
            throw new IllegalArgumentException(what + ": sizes differ, " + a + " and " + b);
        }
    }

    static int rowThreads(int C) {
        return Math.min(1024, Math.max(32, (C + 31) / 32 * 32));
    }

    static int blocks(long n) {
        return (int) Math.max(1, Math.min(1L << 20, (n + THREADS - 1) / THREADS));
    }

    /** Waits for the GPU's queued work. */
    public void synchronize() {
        device.synchronize();
    }

    /** Frees every buffer this object made (arrays handed out become unusable), its kernels and cuBLAS handle. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            device.synchronize();
        } finally {
            for (DeviceBuffer b : owned) {
                b.close();
            }
            owned.clear();
            pool.clear();
            constants.clear();
            partials.close();
            module.close();
            blas.close();
            if (ownsDevice) {
                device.close();
            }
        }
    }
}
