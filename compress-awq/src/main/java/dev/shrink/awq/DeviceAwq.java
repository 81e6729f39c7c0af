package dev.shrink.awq;

import dev.shrink.awq.AwqStage.ClipReport;
import dev.shrink.awq.AwqStage.LayerReport;
import dev.shrink.awq.AwqStage.MappingReport;
import dev.shrink.awq.AwqStage.Module;
import dev.shrink.awq.AwqStage.Resolved;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.AwqMapping;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.util.Progress;
import dev.shrink.kernels.cuda.CudaAwq;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.DeviceBuffer;
import dev.shrink.kernels.cuda.DeviceOps;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * AWQ's block-by-block loop on the GPU: the same steps as {@link AwqStage#run}'s, with the
 * calibration activations resident on the device and the grids evaluated there ({@link CudaAwq},
 * awq.cu). Per block, with X: [n·T, C] the block's input (the <b>original</b> previous block's output):
 * <pre>
 *   statistics   h = RMSNorm(X); A = Attn(h); Xmid = X + A·Woᵀ; h2 = RMSNorm(Xmid); U = silu(h2·Wgᵀ) ⊙ h2·Wuᵀ;
 *                Xout = Xmid + U·Wdᵀ (the next block's input). Σ|x| per channel of each mapping's input,
 *                Σ xᵀx of the inputs of linears inspected alone, the clip search's sampled rows of every
 *                linear's input (h for q/k/v, A for o, h2 for gate/up, U for down).
 *   scale search per mapping, the grid's 20 candidates Q(W·diag(s))·diag(s)⁻¹ made by one kernel; a
 *                sub-block (attention, MLP) is run per chunk once with the original weights and once per
 *                candidate, the squared differences summed on the device; a linear alone is scored
 *                from the Gram matrix: ΔW of every candidate stacked [R·N, K] times G in one GEMM.
 *   apply        on the host weights ({@link AwqApply#scale}, the CPU's arithmetic), uploaded again;
 *                the sampled inputs divided by s on the device.
 *   clip search  per linear but q/k, the 10 clamped candidates of every (row, group) by one kernel,
 *                their partial outputs on the samples as batched GEMMs over the groups, the best step
 *                per (row, group) by one kernel.
 *   quantize     round to nearest with zero points on the device; codes, scales and zeros come back.
 * </pre>
 * The search's candidate scales, w_mean and the plans are computed on the host by the CPU's own code
 * from the device's statistics, so the choices differ from the CPU's only where float summation
 * order changes which candidate is best. GEMMs run in the {@link CudaOps}' arithmetic (float32, or
 * TF32 when asked). Memory: X, Xmid, Xout (3·n·T·C floats), one block's weights, a chunk's scratch
 * and the candidates of one mapping (bounded by {@link #STACK_BYTES} per pass).
 */
final class DeviceAwq {
    /** Tokens per chunk of the forward (rounded to whole sequences). */
    static final int CHUNK_TOKENS = 16384;
    /** Bytes of candidate weights held at once; more candidates run in several passes. */
    static final long STACK_BYTES = 8L << 30;
    /** Bytes of the clip search's partial outputs held at once (groups run in several passes). */
    static final long CLIP_BYTES = 1L << 30;

    private DeviceAwq() {
    }

    /** Receives each quantized linear as it is done (the 7B benchmark keeps none of them). */
    interface Sink {
        void accept(String name, QuantizedLinear q);
    }

    /** Why the spec cannot run on this loop (it hard-wires a LLaMA block), or null when it can. */
    static String unsupported(ArchitectureSpec spec) {
        if (!spec.plainLlamaBlock()) {
            return spec.unlikeLlama();
        }
        EnumSet<Role> seen = EnumSet.noneOf(Role.class);
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (!seen.add(l.role())) {
                return "two linears of role " + l.role() + " in " + spec.family();
            }
        }
        return seen.equals(EnumSet.allOf(Role.class)) ? null : "the linears of " + spec.family() + " are not q/k/v/o/gate/up/down";
    }

    static int chunkSequences(int n, int T) {
        return Math.max(1, Math.min(n, CHUNK_TOKENS / T));
    }

    /** Device memory of the activations and a chunk's scratch, bytes (weights and candidates come on top). */
    static long activationBytes(ModelConfig mc, int n, int T) {
        long C = mc.hidden(), F = mc.intermediate(), qDim = mc.qDim(), kvDim = mc.kvDim();
        long rows = (long) n * T, chunk = (long) chunkSequences(n, T) * T;
        return 4 * (3 * rows * C + chunk * (3 * C + 2 * qDim + 2 * kvDim + 2 * F) + (long) mc.heads() * T * T);
    }

    /**
     * Device memory the loop needs at its peak, bytes: the activations and a chunk's scratch, one
     * block's weights, the Gram matrices of the linears inspected alone (o's and down's inputs), and
     * the largest set of candidates held at once (the MLP's gate and up for 20 ratios, or ΔW and
     * ΔW·G of down's, each bounded by {@link #STACK_BYTES}).
     */
    static long bytesNeeded(ModelConfig mc, int n, int T) {
        long C = mc.hidden(), F = mc.intermediate(), qDim = mc.qDim(), kvDim = mc.kvDim();
        long block = 4 * (C * qDim + 2 * C * kvDim + qDim * C + 3 * C * F + 2 * C);
        long grams = 4 * (qDim * qDim + F * F);
        long grid = ScaleSearch.GRID;
        long mlp = 4 * 2 * F * C, attn = 4 * (qDim + 2 * kvDim) * C, down = 8 * C * F, o = 8 * C * qDim;
        long stack = 0;
        for (long perCandidate : new long[] {mlp, attn, down, o}) {
            stack = Math.max(stack, perCandidate * Math.max(1, Math.min(grid, STACK_BYTES / perCandidate)));
        }
        return activationBytes(mc, n, T) + block + grams + stack + (64L << 20);
    }

    /**
     * Runs AWQ over every decoder block with the calibration windows [n][T] on {@code cuda}'s GPU.
     * With a {@code sink}, quantized linears go there and the result's map is empty.
     */
    /**
     * -Dshrink.trace.memory=true: a line per block on stderr, the device memory the loop holds and the
     * GPU's in use (how a leak outside the loop's own buffers showed: cuBLAS handles, one per call).
     */
    private static final boolean TRACE_MEMORY = Boolean.getBoolean("shrink.trace.memory");

    static AwqStage.Result run(ModelConfig mc, ArchitectureSpec spec, WeightSource src, int[][] windows,
                               AwqStage.Config cfg, CudaOps cuda, boolean quiet, Sink sink) {
        long t0 = System.nanoTime();
        if (windows.length == 0 || windows[0].length == 0) {
            throw new IllegalArgumentException("no calibration windows");
        }
        String why = unsupported(spec);
        if (why != null) {
            throw new IllegalArgumentException("the GPU loop cannot run this: " + why);
        }
        int n = windows.length, T = windows[0].length, C = mc.hidden(), V = mc.vocab();
        long rows = (long) n * T;
        for (int[] w : windows) {
            for (int id : w) {
                if (id < 0 || id >= V) {
                    throw new ShrinkException("calibration token id " + id + " outside the vocabulary of " + V);
                }
            }
        }
        DeviceOps d = cuda.deviceOps();
        CudaDevice dev = d.device();
        long need = bytesNeeded(mc, n, T);
        long free = dev.freeMemory();
        if (need > free) {
            throw new ShrinkException(String.format("AWQ on the GPU needs about %.1f GiB for %d calibration sequences"
                    + " of %d tokens; %s has %.1f GiB free (use fewer --calib-samples, or --device cpu)",
                    need / (double) (1L << 30), n, T, dev.name(), free / (double) (1L << 30)));
        }
        ExecutorService loader = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "awq-weights");
            t.setDaemon(true);
            return t;
        });
        try (CudaAwq awq = new CudaAwq(dev); Loop loop = new Loop(mc, spec, cfg, d, awq, n, T);
             Progress progress = new Progress("awq", mc.layers(), "blocks", quiet)) {
            // Block 0's input: the embeddings of every calibration token, gathered on the GPU.
            Future<BlockWeights> next = loader.submit(() -> BlockWeights.load(src, mc, spec, 0));
            try (DeviceBuffer ids = dev.alloc(rows * 4); DeviceBuffer E = dev.alloc((long) V * C * 4)) {
                int[] flat = new int[Math.toIntExact(rows)];
                for (int i = 0; i < n; i++) {
                    System.arraycopy(windows[i], 0, flat, i * T, T);
                }
                d.upload(flat, ids, 0);
                d.upload(src.floats(spec.embedTokens()), E);
                d.embed(E.address(), ids.address(), rows, C, loop.X.address());
                dev.synchronize();
            }
            for (int layer = 0; layer < mc.layers(); layer++) {
                BlockWeights w = BlockWeights.await(next);
                if (layer + 1 < mc.layers()) {
                    int nextLayer = layer + 1;
                    next = loader.submit(() -> BlockWeights.load(src, mc, spec, nextLayer));
                }
                loop.block(w, sink);
                progress.step(1);
                if (TRACE_MEMORY) {
                    System.err.printf(java.util.Locale.ROOT, "awq block %d: %.2f GiB allocated by the loop (peak %.2f),"
                            + " %.2f GiB in use on the device%n", layer, dev.allocatedBytes() / 1073741824.0,
                            dev.peakAllocatedBytes() / 1073741824.0, dev.usedMemory() / 1073741824.0);
                }
            }
            return new AwqStage.Result(loop.quantized, loop.modified, loop.scalePlans, loop.clipPlans, loop.mappingReports,
                    loop.clipReports, loop.layerReports, new AwqStage.Phases(loop.tStats, loop.tSearch, loop.tClip,
                    loop.tQuant), (System.nanoTime() - t0) / 1e9);
        } finally {
            loader.shutdownNow();
        }
    }

    /**
     * {@link ClipSearch#search} on the device: W [N, K] and its sampled inputs Xs [Ts, K] are device
     * buffers; the S clamped candidates of every (row, group) come from one kernel, their partial
     * outputs from GEMMs batched over the groups, the choice per (row, group) from one kernel.
     */
    static ClipPlan clipSearch(DeviceOps d, CudaAwq awq, String name, DeviceBuffer Wd, int N, int K, DeviceBuffer Xs,
                               int Ts, int gs) {
        CudaDevice dev = d.device();
        int len = AwqQuantizer.groupLength(K, gs), G = K / len, S = ClipSearch.steps();
        int grid = ClipSearch.GRID;
        long perGroup = 4L * Ts * (S + 1) * N;
        int Gc = (int) Math.max(1, Math.min(G, CLIP_BYTES / perGroup));
        long NG = (long) N * G;
        try (DeviceBuffer Qs = dev.alloc(4L * S * N * K); DeviceBuffer orgMax = dev.alloc(4 * NG);
             DeviceBuffer cur = dev.alloc(4L * Gc * Ts * S * N); DeviceBuffer org = dev.alloc(4L * Gc * Ts * N);
             DeviceBuffer steps = dev.alloc(4 * NG); DeviceBuffer maxVal = dev.alloc(4 * NG);
             DeviceBuffer e0 = dev.alloc(8 * NG); DeviceBuffer eb = dev.alloc(8 * NG)) {
            awq.clipQdq(Wd.address(), Qs.address(), orgMax.address(), S, N, K, len, grid);
            for (int g0 = 0; g0 < G; g0 += Gc) {
                int gc = Math.min(Gc, G - g0);
                // per group g: org_g [Ts, N] = X_g·W_gᵀ, cur_g [Ts, S·N] = X_g·Ŵ_gᵀ (all steps)
                d.gemmStridedBatched(false, true, Ts, N, len, 1f,
                        Xs.floatAt((long) g0 * len), K, len, Wd.floatAt((long) g0 * len), K, len, 0f,
                        org.address(), N, (long) Ts * N, gc);
                d.gemmStridedBatched(false, true, Ts, S * N, len, 1f,
                        Xs.floatAt((long) g0 * len), K, len, Qs.floatAt((long) g0 * len), K, len, 0f,
                        cur.address(), S * N, (long) Ts * S * N, gc);
                awq.clipBest(cur.address(), org.address(), orgMax.address(), Ts, S, N, G, g0, gc, grid,
                        steps.address(), maxVal.address(), e0.address(), eb.address());
            }
            int[] st = new int[Math.toIntExact(NG)];
            float[] mv = new float[Math.toIntExact(NG)];
            double[] before = new double[st.length], after = new double[st.length];
            dev.download(steps, 0, MemorySegment.ofArray(st));
            dev.download(maxVal, 0, MemorySegment.ofArray(mv));
            dev.download(e0, 0, MemorySegment.ofArray(before));
            dev.download(eb, 0, MemorySegment.ofArray(after));
            double sb = 0, sa = 0;
            for (int g = 0; g < G; g++) { // the CPU's order: groups, then rows
                for (int nn = 0; nn < N; nn++) {
                    int i = nn * G + g;
                    sb += before[i];
                    sa += Double.isFinite(after[i]) ? after[i] : before[i];
                }
            }
            return new ClipPlan(name, N, K, gs, mv, st, sb / NG, sa / NG);
        }
    }

    record Quantized(int[] codes, float[] scales, int[] zeros, double error) {
    }

    /**
     * Codes of W (scaled) clamped by the plan, and the output error of the dequantized weights
     * against the scaled float ones on the (scaled) samples.
     */
    static Quantized quantize(DeviceOps d, CudaAwq awq, DeviceBuffer Wd, ClipPlan cp, int N, int K, DeviceBuffer Xs,
                              int count, int gs) {
        CudaDevice dev = d.device();
        int len = AwqQuantizer.groupLength(K, gs), G = K / len;
        long nk = (long) N * K;
        try (DeviceBuffer codes = dev.alloc(nk); DeviceBuffer sc = dev.alloc(4L * G * N);
             DeviceBuffer z = dev.alloc(4L * G * N); DeviceBuffer dq = dev.alloc(4 * nk);
             DeviceBuffer Y = dev.alloc((long) count * N * 4);
             DeviceBuffer mv = cp == null ? null : dev.alloc(4L * cp.maxVal().length)) {
            if (mv != null) {
                d.upload(cp.maxVal(), mv);
            }
            awq.quantize(Wd.address(), mv == null ? 0 : mv.address(), codes.address(), sc.address(), z.address(),
                    dq.address(), N, K, len);
            byte[] cb = new byte[Math.toIntExact(nk)];
            float[] scales = new float[G * N];
            int[] zeros = new int[G * N];
            dev.download(codes, 0, MemorySegment.ofArray(cb));
            dev.download(sc, 0, MemorySegment.ofArray(scales));
            dev.download(z, 0, MemorySegment.ofArray(zeros));
            awq.sub(Wd.address(), dq.address(), nk, 1);
            double err = squaredOutput(d, awq, Xs, count, dq, N, K, Y);
            int[] ci = new int[cb.length];
            for (int i = 0; i < ci.length; i++) {
                ci[i] = cb[i] & 0xff;
            }
            return new Quantized(ci, scales, zeros, err);
        }
    }

    /** mean over (t, n) of (Xs·ΔWᵀ)², Xs: [count, K], ΔW: [N, K]; Y: [count, N] scratch. */
    static double squaredOutput(DeviceOps d, CudaAwq awq, DeviceBuffer Xs, int count, DeviceBuffer dW, int N, int K,
                                DeviceBuffer Y) {
        d.linear(Xs.address(), count, K, dW.address(), N, Y.address(), 0f);
        try (DeviceBuffer acc = d.device().alloc(8)) {
            d.device().fill32(acc, 0, 2);
            awq.sqDiff(Y.address(), 0, (long) count * N, acc.address());
            double[] out = new double[1];
            d.device().download(acc, 0, MemorySegment.ofArray(out));
            return out[0] / ((double) count * N);
        }
    }

    /** The loop's device state and results. */
    private static final class Loop implements AutoCloseable {
        final ModelConfig mc;
        final ArchitectureSpec spec;
        final AwqStage.Config cfg;
        final DeviceOps d;
        final CudaAwq awq;
        final CudaDevice dev;
        final int n, T, C, F, H, Hkv, D, qDim, kvDim, bc, chunkRows, stride, count;
        final long rows;
        final float eps;
        final List<DeviceBuffer> owned = new ArrayList<>();
        DeviceBuffer X, Xmid, Xout;
        final DeviceBuffer h, q, k, v, a, u, up, ref, out, scores, cos, sin, inNorm, postNorm, acc;
        final Map<String, DeviceBuffer> W = new LinkedHashMap<>(), bias = new LinkedHashMap<>();
        final Map<Role, String> names = new EnumMap<>(Role.class);

        final Map<String, QuantizedLinear> quantized = new LinkedHashMap<>();
        final Map<String, float[]> modified = new LinkedHashMap<>();
        final List<ScalePlan> scalePlans = new ArrayList<>();
        final List<ClipPlan> clipPlans = new ArrayList<>();
        final List<MappingReport> mappingReports = new ArrayList<>();
        final List<ClipReport> clipReports = new ArrayList<>();
        final List<LayerReport> layerReports = new ArrayList<>();
        double tStats, tSearch, tClip, tQuant;

        Loop(ModelConfig mc, ArchitectureSpec spec, AwqStage.Config cfg, DeviceOps d, CudaAwq awq, int n, int T) {
            this.mc = mc;
            this.spec = spec;
            this.cfg = cfg;
            this.d = d;
            this.awq = awq;
            this.dev = d.device();
            this.n = n;
            this.T = T;
            C = mc.hidden();
            F = mc.intermediate();
            H = mc.heads();
            Hkv = mc.kvHeads();
            D = mc.headDim();
            qDim = mc.qDim();
            kvDim = mc.kvDim();
            rows = (long) n * T;
            bc = chunkSequences(n, T);
            chunkRows = bc * T;
            stride = ClipSearch.sampleStride(rows);
            count = (int) ((rows + stride - 1) / stride);
            eps = (float) mc.rmsNormEps();
            for (ArchitectureSpec.Linear l : spec.linears()) {
                names.put(l.role(), l.name());
            }
            try {
                X = alloc(rows * C * 4);
                Xmid = alloc(rows * C * 4);
                Xout = alloc(rows * C * 4);
                h = alloc((long) chunkRows * C * 4);
                q = alloc((long) chunkRows * qDim * 4);
                k = alloc((long) chunkRows * kvDim * 4);
                v = alloc((long) chunkRows * kvDim * 4);
                a = alloc((long) chunkRows * qDim * 4);
                u = alloc((long) chunkRows * F * 4);
                up = alloc((long) chunkRows * F * 4);
                ref = alloc((long) chunkRows * C * 4);
                out = alloc((long) chunkRows * C * 4);
                scores = alloc(DeviceOps.attentionScratch(T, H) * 4);
                cos = alloc((long) T * (D / 2) * 4);
                sin = alloc((long) T * (D / 2) * 4);
                inNorm = alloc(C * 4L);
                postNorm = alloc(C * 4L);
                acc = alloc(8L * Math.max(64, Math.max(Math.max(C, qDim), F)));
                uploadRope();
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        private DeviceBuffer alloc(long bytes) {
            DeviceBuffer b = dev.alloc(Math.max(4, bytes));
            owned.add(b);
            return b;
        }

        private void uploadRope() {
            int half = D / 2;
            double[] inv = mc.rope().inverseFrequencies(D);
            float[] c = new float[T * half], s = new float[T * half];
            for (int p = 0; p < T; p++) {
                for (int i = 0; i < half; i++) {
                    float angle = (float) p * (float) inv[i];
                    c[p * half + i] = (float) Math.cos(angle);
                    s[p * half + i] = (float) Math.sin(angle);
                }
            }
            d.upload(c, cos);
            d.upload(s, sin);
        }

        /** The input kind of a linear: 0 h (q, k, v), 1 A (o), 2 h2 (gate, up), 3 U (down). */
        int kind(String lin) {
            return switch (AwqStage.roleOf(spec, lin)) {
                case Q, K, V -> 0;
                case O -> 1;
                case GATE, UP -> 2;
                case DOWN -> 3;
            };
        }

        int width(int kind) {
            return switch (kind) {
                case 0, 2 -> C;
                case 1 -> qDim;
                default -> F;
            };
        }

        // ------------------------------------------------------------ forward pieces on a chunk

        /** y[m, N] = x·Wᵀ (+ b) + beta·y with the linear of {@code role}; {@code weights} overrides its weight. */
        void linear(BlockWeights w, Role role, long weights, long x, int m, long y, float beta) {
            String lin = names.get(role);
            int[] nk = w.shape(lin);
            d.linear(x, m, nk[1], weights != 0 ? weights : W.get(lin).address(), nk[0], y, beta);
            if (w.bias(lin) != null) {
                d.addBias(y, bias.get(lin).address(), m, nk[0]);
            }
        }

        /** a = Attn(h) for b sequences (q, k, v from the given weights, 0: the block's). */
        void attention(BlockWeights w, long hh, int b, long wq, long wk, long wv) {
            int m = b * T;
            linear(w, Role.Q, wq, hh, m, q.address(), 0f);
            linear(w, Role.K, wk, hh, m, k.address(), 0f);
            linear(w, Role.V, wv, hh, m, v.address(), 0f);
            d.ropeSequences(q.address(), m, H, D, T, cos.address(), sin.address());
            d.ropeSequences(k.address(), m, Hkv, D, T, cos.address(), sin.address());
            d.attention(q.address(), k.address(), v.address(), b, T, H, Hkv, D, a.address(), scores);
        }

        /** u = silu(x·Wgᵀ) ⊙ x·Wuᵀ (gate and up from the given weights, 0: the block's). */
        void swiglu(BlockWeights w, long x, int m, long wg, long wu) {
            linear(w, Role.GATE, wg, x, m, u.address(), 0f);
            linear(w, Role.UP, wu, x, m, up.address(), 0f);
            d.swiglu(u.address(), up.address(), (long) m * F, u.address());
        }

        // ------------------------------------------------------------ one block

        void block(BlockWeights w, Sink sink) {
            int layer = w.layer(), gs = cfg.groupSize();
            // Which linears AWQ can pack.
            Set<String> fit = new LinkedHashSet<>();
            Map<String, String> unfit = new LinkedHashMap<>();
            AwqStage.sortLinears(spec, w, layer, gs, cfg.skipUnfit(), fit, unfit);
            List<Resolved> active = new ArrayList<>();
            List<MappingReport> skippedMappings = new ArrayList<>();
            for (AwqMapping m : spec.awqMappings()) {
                String why = AwqStage.skipReason(spec, w, m, fit, unfit);
                if (why != null) {
                    skippedMappings.add(new MappingReport(layer, spec.layer(layer, m.previous()),
                            AwqStage.full(spec, layer, m.consumers()), m.inspect(), "skipped", why, null, null, null, null));
                } else {
                    active.add(AwqStage.resolve(spec, w, m));
                }
            }
            List<DeviceBuffer> blockOwned = new ArrayList<>();
            try {
                long ts = System.nanoTime();
                upload(w);
                // 1. Statistics of the original block; Xout = its output.
                Set<Integer> meanKinds = new LinkedHashSet<>(), gramKinds = new LinkedHashSet<>();
                for (Resolved r : active) {
                    meanKinds.add(kind(r.input()));
                    if (r.module() == Module.LINEAR) {
                        gramKinds.add(kind(r.input()));
                    }
                }
                Set<Integer> sampleKinds = new LinkedHashSet<>();
                for (String lin : fit) {
                    sampleKinds.add(kind(lin));
                }
                DeviceBuffer[] absSum = new DeviceBuffer[4], gram = new DeviceBuffer[4], samples = new DeviceBuffer[4];
                for (int kd : meanKinds) {
                    absSum[kd] = own(blockOwned, dev.alloc(8L * width(kd)));
                    dev.fill32(absSum[kd], 0, 2L * width(kd));
                }
                for (int kd : gramKinds) {
                    gram[kd] = own(blockOwned, dev.alloc(4L * width(kd) * width(kd)));
                }
                for (int kd : sampleKinds) {
                    samples[kd] = own(blockOwned, dev.alloc(4L * count * width(kd)));
                }
                statistics(w, absSum, gram, samples);
                if (d.anyNonFinite(Xout.address(), rows * C)) {
                    throw new ShrinkException("block " + layer + ": activations became NaN or Inf on the calibration data");
                }
                // Each linear's own copy of its sampled inputs (divided by its mappings' s later).
                Map<String, DeviceBuffer> sampled = new LinkedHashMap<>();
                for (String lin : fit) {
                    int kd = kind(lin);
                    DeviceBuffer sb = own(blockOwned, dev.alloc(4L * count * width(kd)));
                    dev.copy(samples[kd], 0, sb, 0, 4L * count * width(kd));
                    sampled.put(lin, sb);
                }
                // Plain RTN's output error on the original weights and inputs (the report's errorRtn).
                Map<String, Double> errRtn = new HashMap<>();
                for (String lin : fit) {
                    int[] nk = w.shape(lin);
                    errRtn.put(lin, rtnError(W.get(lin), sampled.get(lin), nk[0], nk[1]));
                }
                dev.synchronize();
                tStats += (System.nanoTime() - ts) / 1e9;

                // 2. Scale search on the original weights.
                long tsearch = System.nanoTime();
                List<ScalePlan> plans = searchScales(w, active, absSum, gram);
                tSearch += (System.nanoTime() - tsearch) / 1e9;

                // 3. Apply the scales on the host (the CPU's arithmetic), upload again; the samples become x / s.
                Set<String> modifiedNames = new LinkedHashSet<>();
                try (DeviceBuffer s = dev.alloc(4L * Math.max(Math.max(C, qDim), F))) {
                    for (ScalePlan p : plans) {
                        AwqApply.scale(w, spec, p);
                        d.upload(p.scales(), s);
                        for (String c : p.consumers()) {
                            awq.divCols(sampled.get(c).address(), s.address(), count, p.scales().length);
                        }
                        modifiedNames.add(p.previous());
                        dev.synchronize();
                    }
                }
                upload(w);

                // 4. Clip search on every quantized linear but Q and K.
                long tc = System.nanoTime();
                Map<String, ClipPlan> clips = new HashMap<>();
                if (cfg.clip()) {
                    for (String lin : fit) {
                        Role role = AwqStage.roleOf(spec, lin);
                        if (role == Role.Q || role == Role.K) {
                            continue;
                        }
                        int[] nk = w.shape(lin);
                        ClipPlan cp = clipSearch(d, awq, spec.layer(layer, lin), W.get(lin), nk[0], nk[1], sampled.get(lin), count, gs);
                        clips.put(lin, cp);
                        clipPlans.add(cp);
                        clipReports.add(new ClipReport(cp.linear(), cp.meanFactor(), cp.clippedFraction(), cp.errorBefore(),
                                cp.errorAfter()));
                    }
                }
                tClip += (System.nanoTime() - tc) / 1e9;

                // 5. Round to nearest with zero points on the device.
                long tq = System.nanoTime();
                for (ArchitectureSpec.Linear l : spec.linears()) {
                    String lin = l.name();
                    String full = spec.layer(layer, lin);
                    int[] nk = w.shape(lin);
                    if (!fit.contains(lin)) {
                        layerReports.add(new LayerReport(full, nk[0], nk[1], "skipped", unfit.get(lin), null, null));
                        continue;
                    }
                    ClipPlan cp = clips.get(lin);
                    Quantized qz = quantize(d, awq, W.get(lin), cp, nk[0], nk[1], sampled.get(lin), count, gs);
                    QuantizedLinear ql = new QuantizedLinear(full, nk[0], nk[1], AwqQuantizer.BITS, gs, qz.codes, qz.scales,
                            qz.zeros, QuantizedLinear.sequentialGIdx(nk[1], gs), w.bias(lin));
                    if (sink != null) {
                        sink.accept(full, ql);
                    } else {
                        quantized.put(full, ql);
                    }
                    layerReports.add(new LayerReport(full, nk[0], nk[1], "quantized", null, errRtn.get(lin), qz.error));
                }
                tQuant += (System.nanoTime() - tq) / 1e9;

                AwqStage.keepModified(spec, layer, w, modifiedNames, fit, modified);
                mappingReports.addAll(skippedMappings);
                for (ScalePlan p : plans) {
                    mappingReports.add(new MappingReport(layer, spec.layer(layer, p.previous()),
                            AwqStage.full(spec, layer, p.consumers()), p.inspect(), "searched", null, p.ratio(), p.loss(),
                            p.lossAtZero(), p.losses()));
                }
                scalePlans.addAll(plans);
                // The original block's output feeds the next block.
                DeviceBuffer t = X;
                X = Xout;
                Xout = t;
            } finally {
                dev.synchronize();
                for (DeviceBuffer b : blockOwned) {
                    b.close();
                }
            }
        }

        private static DeviceBuffer own(List<DeviceBuffer> list, DeviceBuffer b) {
            list.add(b);
            return b;
        }

        /** Uploads the block's norms, weights and biases (buffers allocated on first use, kept across blocks). */
        private void upload(BlockWeights w) {
            d.upload(w.inputNorm(), inNorm);
            d.upload(w.postAttentionNorm(), postNorm);
            for (String lin : w.linearNames()) {
                float[] wl = w.weight(lin);
                DeviceBuffer b = W.get(lin);
                if (b == null || b.bytes() != wl.length * 4L) {
                    if (b != null) {
                        dev.synchronize();
                        b.close();
                    }
                    W.put(lin, b = dev.alloc(wl.length * 4L));
                }
                d.upload(wl, b);
                float[] bl = w.bias(lin);
                if (bl != null) {
                    DeviceBuffer bb = bias.get(lin);
                    if (bb == null || bb.bytes() != bl.length * 4L) {
                        if (bb != null) {
                            dev.synchronize();
                            bb.close();
                        }
                        bias.put(lin, bb = dev.alloc(bl.length * 4L));
                    }
                    d.upload(bl, bb);
                }
            }
            dev.synchronize();
        }

        /** Pass one over every chunk with the original block: statistics, samples, Xmid and Xout. */
        private void statistics(BlockWeights w, DeviceBuffer[] absSum, DeviceBuffer[] gram, DeviceBuffer[] samples) {
            boolean[] gramStarted = new boolean[4];
            for (int c0 = 0; c0 < n; c0 += bc) {
                int b = Math.min(bc, n - c0), m = b * T;
                long off = (long) c0 * T;
                long x = X.floatAt(off * C), xm = Xmid.floatAt(off * C), xo = Xout.floatAt(off * C);
                d.rmsNorm(x, inNorm.address(), eps, m, C, h.address());
                stats(0, h.address(), m, off, absSum, gram, samples, gramStarted);
                attention(w, h.address(), b, 0, 0, 0);
                stats(1, a.address(), m, off, absSum, gram, samples, gramStarted);
                dev.copy(X, off * C * 4, Xmid, off * C * 4, (long) m * C * 4);
                linear(w, Role.O, 0, a.address(), m, xm, 1f);
                d.rmsNorm(xm, postNorm.address(), eps, m, C, h.address());
                stats(2, h.address(), m, off, absSum, gram, samples, gramStarted);
                swiglu(w, h.address(), m, 0, 0);
                stats(3, u.address(), m, off, absSum, gram, samples, gramStarted);
                dev.copy(Xmid, off * C * 4, Xout, off * C * 4, (long) m * C * 4);
                linear(w, Role.DOWN, 0, u.address(), m, xo, 1f);
            }
        }

        /** The statistics of input kind {@code kd}, x: [m, K] at global row {@code off}. */
        private void stats(int kd, long x, int m, long off, DeviceBuffer[] absSum, DeviceBuffer[] gram,
                           DeviceBuffer[] samples, boolean[] gramStarted) {
            int K = width(kd);
            if (absSum[kd] != null) {
                awq.colAbsSum(x, m, K, absSum[kd].address());
            }
            if (gram[kd] != null) {
                d.gemm(true, false, K, K, m, 1f, x, K, x, K, gramStarted[kd] ? 1f : 0f, gram[kd].address(), K);
                gramStarted[kd] = true;
            }
            if (samples[kd] != null) {
                long first = (off + stride - 1) / stride * stride; // first sampled global row ≥ off
                if (first < off + m) {
                    int cnt = (int) ((off + m - 1 - first) / stride + 1);
                    awq.gatherRows(x, K, first - off, stride, cnt, samples[kd].floatAt(first / stride * K));
                }
            }
        }

        /** Plain RTN's output error: mean over (t, n) of (X·Wᵀ − X·Q(W)ᵀ)² on the samples Xs [count, K]. */
        private double rtnError(DeviceBuffer Wd, DeviceBuffer Xs, int N, int K) {
            int len = AwqQuantizer.groupLength(K, cfg.groupSize());
            long nk = (long) N * K;
            try (DeviceBuffer dq = dev.alloc(nk * 4); DeviceBuffer Y = dev.alloc((long) count * N * 4)) {
                awq.scaledQdq(Wd.address(), 0, dq.address(), 1, N, K, len);
                awq.sub(Wd.address(), dq.address(), nk, 1);
                return squaredOutput(d, awq, Xs, count, dq, N, K, Y);
            }
        }

        private double[] readDoubles(DeviceBuffer b, int len) {
            double[] out = new double[len];
            dev.download(b, 0, MemorySegment.ofArray(out));
            return out;
        }

        // ------------------------------------------------------------ the scale search

        private List<ScalePlan> searchScales(BlockWeights w, List<Resolved> active, DeviceBuffer[] absSum,
                                             DeviceBuffer[] gram) {
            int layer = w.layer(), gs = cfg.groupSize();
            double[] ratios = ScaleSearch.ratios(ScaleSearch.GRID);
            List<ScalePlan> plans = new ArrayList<>();
            for (Resolved r : active) {
                int kd = kind(r.input());
                double[] sum = readDoubles(absSum[kd], width(kd));
                float[] xMean = new float[sum.length];
                for (int i = 0; i < sum.length; i++) {
                    xMean[i] = (float) (sum[i] / rows);
                }
                float[] wMean = null;
                if (cfg.duoScaling()) {
                    List<float[]> ws = new ArrayList<>();
                    for (String c : r.consumers()) {
                        ws.add(w.weight(c));
                    }
                    wMean = ScaleSearch.wMean(ws, r.K(), gs);
                }
                float[][] cand = new float[ratios.length][];
                for (int i = 0; i < ratios.length; i++) {
                    cand[i] = ScaleSearch.scales(xMean, wMean, ratios[i]);
                }
                double[] losses = r.module() == Module.LINEAR ? linearLosses(w, r, cand, gram[kd])
                        : moduleLosses(w, r, cand);
                int best = ScaleSearch.best(losses);
                if (best < 0) {
                    throw new ShrinkException(spec.layer(layer, r.mapping().previous()) + " -> " + r.consumers()
                            + ": the AWQ loss is not a number for any ratio (activations or weights out of range?)");
                }
                plans.add(new ScalePlan(layer, r.mapping().previous(), r.consumers(), r.mapping().inspect(), best, ratios,
                        losses, cand[best]));
            }
            return plans;
        }

        /** Uploads candidates r0 .. r0+R−1 of the scales, [R, K]. */
        private DeviceBuffer scalesOf(float[][] cand, int r0, int R, int K) {
            DeviceBuffer s = dev.alloc(4L * R * K);
            for (int i = 0; i < R; i++) {
                d.upload(cand[r0 + i], 0, K, s, (long) i * K);
            }
            return s;
        }

        /**
         * A linear inspected alone: loss_i = tr(ΔW_i·G·ΔW_iᵀ) / (tokens·N) with ΔW_i = W − Q(W·s_i)/s_i,
         * the candidates stacked [R·N, K] so that P = ΔW·G is one GEMM ({@link ScaleSearch#linearLoss}).
         */
        private double[] linearLosses(BlockWeights w, Resolved r, float[][] cand, DeviceBuffer G) {
            String c = r.input();
            int[] nk = w.shape(c);
            int N = nk[0], K = nk[1], grid = cand.length, len = AwqQuantizer.groupLength(K, cfg.groupSize());
            long nkl = (long) N * K;
            int perPass = (int) Math.max(1, Math.min(grid, STACK_BYTES / (8 * nkl)));
            double[] losses = new double[grid];
            for (int r0 = 0; r0 < grid; r0 += perPass) {
                int R = Math.min(perPass, grid - r0);
                try (DeviceBuffer s = scalesOf(cand, r0, R, K); DeviceBuffer dW = dev.alloc(4 * nkl * R);
                     DeviceBuffer P = dev.alloc(4 * nkl * R)) {
                    awq.scaledQdq(W.get(c).address(), s.address(), dW.address(), R, N, K, len);
                    awq.sub(W.get(c).address(), dW.address(), nkl, R);
                    d.gemm(false, false, R * N, K, K, 1f, dW.address(), K, G.address(), K, 0f, P.address(), K);
                    dev.fill32(acc, 0, 2L * R);
                    awq.dot(P.address(), dW.address(), nkl, R, acc.address());
                    double[] sums = readDoubles(acc, R);
                    for (int i = 0; i < R; i++) {
                        losses[r0 + i] = sums[i] / ((double) rows * N);
                    }
                }
            }
            return losses;
        }

        /**
         * A sub-block (attention or MLP): per chunk, its output with the original weights, then with
         * each candidate's consumers; loss_i = Σ (out_i − out)² / (tokens·C).
         */
        private double[] moduleLosses(BlockWeights w, Resolved r, float[][] cand) {
            int grid = cand.length, K = r.K(), len = AwqQuantizer.groupLength(K, cfg.groupSize());
            long perCandidate = 0;
            for (String c : r.consumers()) {
                int[] nk = w.shape(c);
                perCandidate += 4L * nk[0] * nk[1];
            }
            int perPass = (int) Math.max(1, Math.min(grid, STACK_BYTES / perCandidate));
            double[] sse = new double[grid];
            boolean attn = r.module() == Module.ATTENTION;
            for (int r0 = 0; r0 < grid; r0 += perPass) {
                int R = Math.min(perPass, grid - r0);
                Map<String, DeviceBuffer> stacks = new HashMap<>();
                try (DeviceBuffer s = scalesOf(cand, r0, R, K)) {
                    for (String c : r.consumers()) {
                        int[] nk = w.shape(c);
                        DeviceBuffer st = dev.alloc(4L * nk[0] * nk[1] * R);
                        stacks.put(c, st);
                        awq.scaledQdq(W.get(c).address(), s.address(), st.address(), R, nk[0], nk[1], len);
                    }
                    dev.fill32(acc, 0, 2L * R);
                    for (int c0 = 0; c0 < n; c0 += bc) {
                        int b = Math.min(bc, n - c0), m = b * T;
                        long off = (long) c0 * T;
                        if (attn) {
                            d.rmsNorm(X.floatAt(off * C), inNorm.address(), eps, m, C, h.address());
                            attention(w, h.address(), b, 0, 0, 0);
                            linear(w, Role.O, 0, a.address(), m, ref.address(), 0f);
                        } else {
                            d.rmsNorm(Xmid.floatAt(off * C), postNorm.address(), eps, m, C, h.address());
                            swiglu(w, h.address(), m, 0, 0);
                            linear(w, Role.DOWN, 0, u.address(), m, ref.address(), 0f);
                        }
                        for (int i = 0; i < R; i++) {
                            if (attn) {
                                attention(w, h.address(), b, candidate(w, stacks, Role.Q, i), candidate(w, stacks, Role.K, i),
                                        candidate(w, stacks, Role.V, i));
                                linear(w, Role.O, 0, a.address(), m, out.address(), 0f);
                            } else {
                                swiglu(w, h.address(), m, candidate(w, stacks, Role.GATE, i), candidate(w, stacks, Role.UP, i));
                                linear(w, Role.DOWN, 0, u.address(), m, out.address(), 0f);
                            }
                            awq.sqDiff(out.address(), ref.address(), (long) m * C, acc.address() + 8L * i);
                        }
                    }
                    double[] sums = readDoubles(acc, R);
                    System.arraycopy(sums, 0, sse, r0, R);
                } finally {
                    dev.synchronize();
                    for (DeviceBuffer b : stacks.values()) {
                        b.close();
                    }
                }
            }
            double denom = (double) rows * C;
            double[] losses = new double[grid];
            for (int i = 0; i < grid; i++) {
                losses[i] = sse[i] / denom;
            }
            return losses;
        }

        /** The address of candidate i's weight of the linear of {@code role}, or 0 when it is not a consumer. */
        private long candidate(BlockWeights w, Map<String, DeviceBuffer> stacks, Role role, int i) {
            String lin = names.get(role);
            DeviceBuffer st = stacks.get(lin);
            if (st == null) {
                return 0;
            }
            int[] nk = w.shape(lin);
            return st.floatAt((long) i * nk[0] * nk[1]);
        }

        // ------------------------------------------------------------ the clip search

        // ------------------------------------------------------------ quantize

        @Override
        public void close() {
            dev.synchronize();
            for (DeviceBuffer b : owned) {
                b.close();
            }
            for (DeviceBuffer b : W.values()) {
                b.close();
            }
            for (DeviceBuffer b : bias.values()) {
                b.close();
            }
        }
    }
}
