package dev.shrink.gptq;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Calibration;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.util.Progress;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaGptq;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.DeviceBuffer;
import dev.shrink.kernels.cuda.DeviceOps;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * GPTQ's block-by-block loop on the GPU (the same loop as {@link GptqStage#run}'s, true-sequential),
 * with the calibration activations resident on the device for the whole run and each block's
 * weights uploaded once:
 * <pre>
 *   X = embed(windows)                                   X: [n·T, C], float32, on the GPU
 *   per block:
 *     h  = RMSNorm(X)            S = Σ hᵀh    → GPTQ q, k, v   (one H⁻¹ factor for the three)
 *     A  = Attn(h; q, k, v)      S = Σ AᵀA    → GPTQ o         A: [n·T, H·D] kept
 *     X += A·Woᵀ;  A = RMSNorm(X) S = Σ AᵀA   → GPTQ gate, up  (A now holds the MLP input)
 *     U  = silu(A·Wgᵀ) ⊙ A·Wuᵀ    S = Σ UᵀU   → GPTQ down      U: [n·T, F] kept
 *     X += U·Wdᵀ                                            the next block's input
 * </pre>
 * Each linear's GEMM runs once per block, with its quantized weights, as the CPU loop's partial
 * forwards compute them; the Hessians are cuBLAS GEMMs on the device, the solver is {@link CudaGptq};
 * only the codes, group parameters and report figures come back. Sequences go through in chunks of
 * about 16k tokens (the attention scores and GEMM scratch are per chunk). GEMMs run in the
 * {@link CudaOps}' arithmetic (float32, or TF32 when asked); the activations are float32.
 *
 * <p>Peak device memory: X, A and U (n·T·(C + max(C, H·D) + F) floats), one block's weights, one
 * Hessian and its float64 factor workspaces, and a chunk's scratch; checked against the GPU's free
 * memory before anything is allocated.
 */
final class DeviceGptq {
    /** Tokens per chunk of the forward (rounded to whole sequences). */
    static final int CHUNK_TOKENS = 16384;

    private DeviceGptq() {
    }

    /** Receives each quantized linear as it is done (in place of collecting them). */
    interface Sink {
        void accept(String name, int N, int K, CudaGptq.Result r, float[] bias);
    }

    /** Why this configuration cannot run on the device loop, or null when it can. */
    static String unsupported(GptqStage.Config cfg, ArchitectureSpec spec) {
        if (!spec.plainLlamaBlock()) {
            return spec.unlikeLlama();
        }
        if (!cfg.method().equals("gptq")) {
            return "method " + cfg.method();
        }
        if (cfg.scheme().mse()) {
            return "--mse";
        }
        if (cfg.awqScales()) {
            return "--awq-scales";
        }
        if (cfg.gptaq()) {
            return "--gptaq";
        }
        if (!cfg.trueSequential()) {
            return "--no-true-sequential";
        }
        if (cfg.blockSize() > CudaGptq.MAX_BLOCK) {
            return "--block-size above " + CudaGptq.MAX_BLOCK;
        }
        return stageGroups(spec) == null ? "the sequential groups of " + spec.family() : null;
    }

    /**
     * The spec's true-sequential groups in the order of this loop's stages: {q, k, v}, {o},
     * {gate, up}, {down} (each group's names in the spec's own order), or null when the spec's
     * groups are not those four.
     */
    static List<List<String>> stageGroups(ArchitectureSpec spec) {
        List<java.util.Set<Role>> want = List.of(java.util.Set.of(Role.Q, Role.K, Role.V), java.util.Set.of(Role.O),
                java.util.Set.of(Role.GATE, Role.UP), java.util.Set.of(Role.DOWN));
        List<List<String>> groups = spec.sequentialGroups();
        if (groups.size() != want.size()) {
            return null;
        }
        for (int i = 0; i < groups.size(); i++) {
            java.util.Set<Role> roles = new java.util.HashSet<>();
            for (String name : groups.get(i)) {
                spec.linears().stream().filter(l -> l.name().equals(name)).forEach(l -> roles.add(l.role()));
            }
            if (!roles.equals(want.get(i)) || roles.size() != groups.get(i).size()) {
                return null;
            }
        }
        return groups;
    }

    /** Device memory the loop needs, bytes (activations, one block, scratch, solver workspaces). */
    static long bytesNeeded(ModelConfig mc, int n, int T, boolean actOrder) {
        long C = mc.hidden(), F = mc.intermediate(), qDim = mc.qDim(), kvDim = mc.kvDim();
        long rows = (long) n * T, chunk = chunkSequences(n, T) * (long) T;
        long kmax = Math.max(Math.max(C, qDim), F), nmax = Math.max(Math.max(C, qDim), F);
        long floats = rows * (C + Math.max(C, qDim) + F)                 // X, A, U
                + 2 * C * qDim + 2 * C * kvDim + 3 * C * F + 2 * C        // one block's weights
                + chunk * (C + qDim + 2 * kvDim + F)                     // chunk scratch
                + (long) mc.heads() * T * T                              // attention scores
                + kmax * kmax                                            // S
                + kmax * kmax * 5                                        // float64 H and factor (2 × 2), float Hinv
                + nmax * CudaGptq.MAX_BLOCK + nmax * kmax / 4;           // Err, codes (bytes)
        if (actOrder) {
            floats += nmax * kmax * 5 / 4;
        }
        return floats * 4 + (64L << 20);
    }

    static int chunkSequences(int n, int T) {
        return Math.max(1, Math.min(n, CHUNK_TOKENS / T));
    }

    /**
     * Runs GPTQ over every decoder block with the calibration windows [n][T] on {@code cuda}'s GPU.
     * With a {@code sink}, results go there and the returned map is empty (a 7B model's codes would
     * not fit the heap otherwise).
     */
    static GptqStage.Result run(ModelConfig mc, ArchitectureSpec spec, WeightSource src, int[][] windows,
                                GptqStage.Config cfg, CudaOps cuda, boolean quiet, Sink sink) {
        long t0 = System.nanoTime();
        int n = windows.length, T = windows[0].length;
        int C = mc.hidden(), F = mc.intermediate(), H = mc.heads(), Hkv = mc.kvHeads(), D = mc.headDim();
        int qDim = mc.qDim(), kvDim = mc.kvDim(), V = mc.vocab();
        long rows = (long) n * T;
        int bc = chunkSequences(n, T), chunkRows = bc * T;
        int wa = Math.max(qDim, C);
        QuantScheme s = cfg.scheme();
        CudaGptq.Scheme scheme = new CudaGptq.Scheme(s.bits(), s.groupSize(), s.sym(), cfg.blockSize(),
                cfg.staticGroups());
        float eps = (float) mc.rmsNormEps();
        List<List<String>> groups = stageGroups(spec);
        if (groups == null || unsupported(cfg, spec) != null) {
            throw new IllegalArgumentException("the GPU loop cannot run this: " + unsupported(cfg, spec));
        }
        DeviceOps d = cuda.deviceOps();
        CudaDevice dev = d.device();

        long need = bytesNeeded(mc, n, T, cfg.actOrder());
        long free = dev.freeMemory();
        if (need > free) {
            throw new ShrinkException(String.format("GPTQ on the GPU needs about %.1f GiB for %d calibration sequences"
                    + " of %d tokens; %s has %.1f GiB free (use fewer --calib-samples, or --device cpu)",
                    need / (double) (1L << 30), n, T, dev.name(), free / (double) (1L << 30)));
        }
        for (int[] w : windows) {
            for (int id : w) {
                if (id < 0 || id >= V) {
                    throw new ShrinkException("calibration token id " + id + " outside the vocabulary of " + V);
                }
            }
        }

        Map<String, QuantizedLinear> out = new LinkedHashMap<>();
        List<GptqStage.LayerReport> reports = new ArrayList<>();
        Timer time = new Timer(dev);
        ExecutorService loader = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "gptq-weights");
            t.setDaemon(true);
            return t;
        });
        List<DeviceBuffer> owned = new ArrayList<>();
        try (CudaGptq gptq = new CudaGptq(d); Progress progress = new Progress("gptq", mc.layers(), "blocks", quiet)) {
            DeviceBuffer X = own(owned, dev.alloc(rows * C * 4));          // residual stream [n·T, C]
            DeviceBuffer A = own(owned, dev.alloc(rows * wa * 4));         // attention out, then MLP input
            DeviceBuffer U = own(owned, dev.alloc(rows * F * 4));          // MLP activations [n·T, F]
            DeviceBuffer h = own(owned, dev.alloc((long) chunkRows * C * 4));
            DeviceBuffer q = own(owned, dev.alloc((long) chunkRows * qDim * 4));
            DeviceBuffer k = own(owned, dev.alloc((long) chunkRows * kvDim * 4));
            DeviceBuffer v = own(owned, dev.alloc((long) chunkRows * kvDim * 4));
            DeviceBuffer up = own(owned, dev.alloc((long) chunkRows * F * 4));
            DeviceBuffer scores = own(owned, dev.alloc(DeviceOps.attentionScratch(T, H) * 4));
            int kmax = Math.max(Math.max(C, qDim), F);
            DeviceBuffer S = own(owned, dev.alloc((long) kmax * kmax * 4));
            DeviceBuffer cos = own(owned, dev.alloc((long) T * (D / 2) * 4));
            DeviceBuffer sin = own(owned, dev.alloc((long) T * (D / 2) * 4));
            uploadRope(d, mc, T, cos, sin);
            Map<String, DeviceBuffer> W = new LinkedHashMap<>(), bias = new LinkedHashMap<>();
            DeviceBuffer inNorm = own(owned, dev.alloc(C * 4L)), postNorm = own(owned, dev.alloc(C * 4L));

            // Block 0's input: the embeddings of every calibration token, gathered on the GPU.
            Future<BlockWeights> next = loader.submit(() -> BlockWeights.load(src, mc, spec, 0));
            time.start();
            try (DeviceBuffer ids = dev.alloc(rows * 4); DeviceBuffer E = dev.alloc((long) V * C * 4)) {
                int[] flat = new int[Math.toIntExact(rows)];
                for (int i = 0; i < n; i++) {
                    System.arraycopy(windows[i], 0, flat, i * T, T);
                }
                d.upload(flat, ids, 0);
                d.upload(src.floats(spec.embedTokens()), E);
                d.embed(E.address(), ids.address(), rows, C, X.address());
                dev.synchronize();
            }
            time.add(Phase.FORWARD);

            for (int layer = 0; layer < mc.layers(); layer++) {
                BlockWeights w = BlockWeights.await(next);
                if (layer + 1 < mc.layers()) {
                    int nextLayer = layer + 1;
                    next = loader.submit(() -> BlockWeights.load(src, mc, spec, nextLayer));
                }
                time.start();
                d.upload(w.inputNorm(), inNorm);
                d.upload(w.postAttentionNorm(), postNorm);
                for (String lin : w.linearNames()) {
                    float[] wl = w.weight(lin);
                    DeviceBuffer b = W.computeIfAbsent(lin, x -> own(owned, dev.alloc(wl.length * 4L)));
                    d.upload(wl, b);
                    float[] bl = w.bias(lin);
                    if (bl != null) {
                        d.upload(bl, bias.computeIfAbsent(lin, x -> own(owned, dev.alloc(bl.length * 4L))));
                    }
                }
                dev.synchronize();
                time.add(Phase.FORWARD);
                Block blk = new Block(layer, spec, w, W, bias, cfg, reports);

                // q, k, v: inputs h = RMSNorm(X)
                List<String> qkv = blk.todo(groups.get(0));
                if (!qkv.isEmpty()) {
                    for (int c0 = 0; c0 < n; c0 += bc) {
                        int m = Math.min(bc, n - c0) * T;
                        time.start();
                        d.rmsNorm(X.floatAt((long) c0 * T * C), inNorm.address(), eps, m, C, h.address());
                        time.add(Phase.FORWARD);
                        hessian(d, h.address(), m, C, S, c0 == 0);
                        time.add(Phase.HESSIAN);
                    }
                    blk.quantize(gptq, S, C, n, qkv, time, sink, out);
                }

                // o: inputs A = Attn(h), kept for the residual
                List<String> o = blk.todo(groups.get(1));
                for (int c0 = 0; c0 < n; c0 += bc) {
                    int b = Math.min(bc, n - c0), m = b * T;
                    time.start();
                    d.rmsNorm(X.floatAt((long) c0 * T * C), inNorm.address(), eps, m, C, h.address());
                    blk.linear(d, Role.Q, h.address(), m, q.address(), 0f);
                    blk.linear(d, Role.K, h.address(), m, k.address(), 0f);
                    blk.linear(d, Role.V, h.address(), m, v.address(), 0f);
                    d.ropeSequences(q.address(), m, H, D, T, cos.address(), sin.address());
                    d.ropeSequences(k.address(), m, Hkv, D, T, cos.address(), sin.address());
                    long a = A.floatAt((long) c0 * T * wa);
                    d.attention(q.address(), k.address(), v.address(), b, T, H, Hkv, D, a, scores);
                    time.add(Phase.FORWARD);
                    if (!o.isEmpty()) {
                        hessian(d, a, m, qDim, S, c0 == 0);
                        time.add(Phase.HESSIAN);
                    }
                }
                if (!o.isEmpty()) {
                    blk.quantize(gptq, S, qDim, n, o, time, sink, out);
                }

                // gate, up: X += A·Woᵀ; inputs A = RMSNorm(X) (over the attention output, which is used up)
                List<String> gu = blk.todo(groups.get(2));
                for (int c0 = 0; c0 < n; c0 += bc) {
                    int m = Math.min(bc, n - c0) * T;
                    long x = X.floatAt((long) c0 * T * C), a = A.floatAt((long) c0 * T * wa);
                    time.start();
                    blk.linear(d, Role.O, a, m, x, 1f);
                    d.rmsNorm(x, postNorm.address(), eps, m, C, a);
                    time.add(Phase.FORWARD);
                    if (!gu.isEmpty()) {
                        hessian(d, a, m, C, S, c0 == 0);
                        time.add(Phase.HESSIAN);
                    }
                }
                if (!gu.isEmpty()) {
                    blk.quantize(gptq, S, C, n, gu, time, sink, out);
                }

                // down: inputs U = silu(A·Wgᵀ) ⊙ A·Wuᵀ, kept for the residual
                List<String> dn = blk.todo(groups.get(3));
                for (int c0 = 0; c0 < n; c0 += bc) {
                    int m = Math.min(bc, n - c0) * T;
                    long a = A.floatAt((long) c0 * T * wa), u = U.floatAt((long) c0 * T * F);
                    time.start();
                    blk.linear(d, Role.GATE, a, m, u, 0f);
                    blk.linear(d, Role.UP, a, m, up.address(), 0f);
                    d.swiglu(u, up.address(), (long) m * F, u);
                    time.add(Phase.FORWARD);
                    if (!dn.isEmpty()) {
                        hessian(d, u, m, F, S, c0 == 0);
                        time.add(Phase.HESSIAN);
                    }
                }
                if (!dn.isEmpty()) {
                    blk.quantize(gptq, S, F, n, dn, time, sink, out);
                }

                // X += U·Wdᵀ: the quantized block's output, the next block's input
                time.start();
                for (int c0 = 0; c0 < n; c0 += bc) {
                    int m = Math.min(bc, n - c0) * T;
                    blk.linear(d, Role.DOWN, U.floatAt((long) c0 * T * F), m, X.floatAt((long) c0 * T * C), 1f);
                }
                if (d.anyNonFinite(X.address(), rows * C)) {
                    throw new ShrinkException("block " + layer + ": activations became NaN or Inf on the calibration data");
                }
                time.add(Phase.FORWARD);
                progress.step(1);
            }
        } finally {
            loader.shutdownNow();
            dev.synchronize();
            for (DeviceBuffer b : owned) {
                b.close();
            }
        }
        return new GptqStage.Result(out, reports, time.phases(), (System.nanoTime() - t0) / 1e9, Map.of());
    }

    /** S (+)= xᵀ·x for x: [m, K]; S: [K, K]. */
    private static void hessian(DeviceOps d, long x, int m, int K, DeviceBuffer S, boolean first) {
        d.gemm(true, false, K, K, m, 1f, x, K, x, K, first ? 0f : 1f, S.address(), K);
    }

    /** cos/sin of positions 0..T−1 as {@code Decoder} computes them: angle = (float) p · (float) inv_freq[i]. */
    private static void uploadRope(DeviceOps d, ModelConfig mc, int T, DeviceBuffer cos, DeviceBuffer sin) {
        int half = mc.headDim() / 2;
        double[] inv = mc.rope().inverseFrequencies(mc.headDim());
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

    private static DeviceBuffer own(List<DeviceBuffer> owned, DeviceBuffer b) {
        owned.add(b);
        return b;
    }

    /** One block on the device: its linears by role, which of them to quantize, the reports. */
    private static final class Block {
        private final int layer;
        private final ArchitectureSpec spec;
        private final BlockWeights w;
        private final Map<String, DeviceBuffer> W, bias;
        private final GptqStage.Config cfg;
        private final List<GptqStage.LayerReport> reports;
        private final Map<Role, String> names = new EnumMap<>(Role.class);

        Block(int layer, ArchitectureSpec spec, BlockWeights w, Map<String, DeviceBuffer> W,
              Map<String, DeviceBuffer> bias, GptqStage.Config cfg, List<GptqStage.LayerReport> reports) {
            this.layer = layer;
            this.spec = spec;
            this.w = w;
            this.W = W;
            this.bias = bias;
            this.cfg = cfg;
            this.reports = reports;
            for (ArchitectureSpec.Linear l : spec.linears()) {
                names.put(l.role(), l.name());
            }
        }

        /** y[m, N] = x·Wᵀ (+ b) + beta·y for the linear of {@code role}. */
        void linear(DeviceOps d, Role role, long x, int m, long y, float beta) {
            String lin = names.get(role);
            int[] nk = w.shape(lin);
            d.linear(x, m, nk[1], W.get(lin).address(), nk[0], y, beta);
            if (w.bias(lin) != null) {
                d.addBias(y, bias.get(lin).address(), m, nk[0]);
            }
        }

        /** The linears of this group to quantize; the others are reported skipped, as the CPU loop does. */
        List<String> todo(List<String> group) {
            List<String> todo = new ArrayList<>();
            for (String lin : group) {
                int[] nk = w.shape(lin);
                String full = spec.layer(layer, lin);
                if (cfg.only() != null && !cfg.only().contains(full)) {
                    reports.add(new GptqStage.LayerReport(full, nk[0], nk[1], "skipped", "not targeted", 0, 0, false, 0, 0, 0));
                    continue;
                }
                String why = GptqStage.unpackableReason(nk[0], nk[1], cfg.scheme());
                if (why != null) {
                    reports.add(new GptqStage.LayerReport(full, nk[0], nk[1], "skipped", why, 0, 0, false, 0, 0, 0));
                } else {
                    todo.add(lin);
                }
            }
            return todo;
        }

        /** GPTQ of {@code lins}, which share the inputs whose Σ xᵀx is S: [K, K], over n sequences. */
        void quantize(CudaGptq gptq, DeviceBuffer S, int K, int n, List<String> lins, Timer time, Sink sink,
                      Map<String, QuantizedLinear> out) {
            time.start();
            CudaGptq.Factor f;
            try {
                f = gptq.factor(S, K, 2f / n, cfg.damp(), cfg.actOrder());
            } catch (CudaGptq.NotPositiveDefinite e) {
                throw new ShrinkException(spec.layer(layer, lins.get(0)) + ": " + e.getMessage());
            }
            time.add(Phase.CHOLESKY);
            for (String lin : lins) {
                int[] nk = w.shape(lin);
                String full = spec.layer(layer, lin);
                Calibration.requireFiniteWeight(w.weight(lin), full + ".weight");
                CudaGptq.Result r = gptq.quantize(f, W.get(lin), nk[0], nk[1],
                        new CudaGptq.Scheme(cfg.scheme().bits(), cfg.scheme().groupSize(), cfg.scheme().sym(),
                                cfg.blockSize(), cfg.staticGroups()));
                time.add(Phase.COLUMNS);
                if (sink != null) {
                    sink.accept(full, nk[0], nk[1], r, w.bias(lin));
                } else {
                    out.put(full, toQuantizedLinear(full, nk[0], nk[1], cfg.scheme(), r, w.bias(lin)));
                }
                reports.add(new GptqStage.LayerReport(full, nk[0], nk[1], "quantized", null, r.loss(), f.damp(),
                        f.raised(), f.dead(), r.seconds() + f.seconds() / lins.size(), r.masked()));
            }
        }
    }

    /** The packed-format record of a device result: codes as ints, zero points rounded. */
    static QuantizedLinear toQuantizedLinear(String name, int N, int K, QuantScheme s, CudaGptq.Result r, float[] bias) {
        int[] codes = new int[r.codes().length];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = r.codes()[i] & 0xff;
        }
        int[] zeros = new int[r.zeros().length];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = Math.round(r.zeros()[i]);
        }
        return new QuantizedLinear(name, N, K, s.bits(), s.groupSize(), codes, r.scales(), zeros, r.gIdx(), bias);
    }

    enum Phase { FORWARD, HESSIAN, CHOLESKY, COLUMNS }

    /** Wall time per phase, the device synchronized at each boundary so that queued work is counted where it was queued. */
    private static final class Timer {
        private final CudaDevice dev;
        private final double[] seconds = new double[Phase.values().length];
        private long t;

        Timer(CudaDevice dev) {
            this.dev = dev;
        }

        void start() {
            t = System.nanoTime();
        }

        void add(Phase p) {
            dev.synchronize();
            long now = System.nanoTime();
            seconds[p.ordinal()] += (now - t) / 1e9;
            t = now;
        }

        GptqStage.Phases phases() {
            return new GptqStage.Phases(seconds[0], seconds[1], seconds[2], seconds[3]);
        }
    }
}
