package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Decode speed at batch 1 of a Llama-2-7B-shaped decoder resident on the GPU (32 layers, hidden
 * 4096, MLP 11008, 32 heads of 128, vocabulary 32000; random weights made on the GPU, no files),
 * with fp16 linear weights (cuBLAS GEMV: fp16 weights and inputs, float32 sums) against W4A16
 * packed GPTQ weights (w4 g128, {@link W4a16Gemv}'s tensor-core kernel). Both fuse q|k|v and
 * gate|up into one product each (W4A16 weights in the tiled layout, {@link W4a16Gemv#tile}, made
 * from GPTQ-layout codes at load) (weights concatenated along N, as engines load them); the LM head
 * stays fp16 in both (as GPTQ checkpoints keep it). Activations float32, matrix inputs fp16; RMSNorm,
 * RoPE with the KV-cache append, single-query attention over the cache, SwiGLU and the embedding are
 * decode.cu's kernels; the position lives in device memory, so one token's ~300 launches are captured
 * once into a CUDA graph and replayed per token. Each mode decodes {@code --tokens} tokens from position
 * 0 twice: launched from Java one kernel at a time ("eager"), and as graph replays ("graph"); the two
 * runs' final logits must agree (exactly for fp16; to float rounding for W4A16, whose split GEMV adds
 * its K slices into y atomically, in an order that varies), which checks the graph's device-side position. Prints decode tok/s, ms/token, the weight bytes read per token and the
 * effective GB/s (those bytes / time), and {@code RESULT|decode ...} lines for scripts/device-bench.sh.
 * W4A16 runs first with {@link W4a16Gemv#gemvTiled}'s choice (the split kernel), then each of its four linears
 * tries that and the tensor-core kernel's compiled shapes over the model's own weights (a graph of its 32 launches each) and
 * keeps the fastest ("W4A16*": tuned once at load, as inference engines do), and decodes again.
 *
 * With {@code --pdl} the W4A16 model also decodes with its GEMVs launched programmatically
 * ({@link W4a16Gemv.Pdl}: each may start while the kernel before it drains), default shapes, and the
 * final logits are compared with the plain launches' (bit for bit only where no kernel adds atomically).
 * {@code --w4-only} leaves the fp16 model out, {@code --no-tune} the per-linear shape search.
 *
 * <pre>java -cp 'lib/*' dev.shrink.kernels.cuda.DecodeBench [--tokens 128] [--layers 32] [--pdl] [--w4-only] [--no-tune]</pre>
 */
public final class DecodeBench {
    private static final int C = 4096, F = 11008, H = 32, HKV = 32, D = 128, V = 32000, GROUP = 128;
    private static final float EPS = 1e-5f;

    private DecodeBench() {
    }

    private record Layer(DecodeLinear qkv, DecodeLinear o, DecodeLinear gu, DecodeLinear down, DeviceBuffer n1, DeviceBuffer n2,
                         DeviceBuffer kc, DeviceBuffer vc) {
    }

    public static void main(String[] args) {
        int tokens = 128, layers = 32;
        boolean pdl = false, fp16Too = true, tune = true;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--tokens" -> tokens = Integer.parseInt(args[++i]);
                case "--layers" -> layers = Integer.parseInt(args[++i]);
                case "--pdl" -> pdl = true;
                case "--w4-only" -> fp16Too = false;
                case "--no-tune" -> tune = false;
                default -> {
                    System.err.println("DecodeBench: unknown option " + args[i]
                            + " (--tokens N, --layers L, --pdl, --w4-only, --no-tune)");
                    System.exit(2);
                }
            }
        }
        try (CudaOps ops = CudaOps.open(0); W4a16Gemv gemv = new W4a16Gemv(ops.device());
             CudaModule mod = ops.device().module("decode.cu"); CublasHandle blas = ops.device().openCublas()) {
            CudaDevice dev = ops.device();
            System.out.printf(Locale.ROOT, "decode at batch 1 on %s: %d layers, hidden %d, mlp %d, %d heads x %d,"
                    + " vocab %d, %d tokens from position 0; q|k|v and gate|up fused; LM head fp16%n",
                    dev.describe(), layers, C, F, H, D, V, tokens);
            System.out.printf(Locale.ROOT, "%-8s %-6s %10s %10s %14s %10s %12s%n", "weights", "launch", "tok/s",
                    "ms/token", "GB read/token", "GB/s", "host ms/tok");
            double[] fp16 = fp16Too ? run(dev, mod, blas, gemv, false, layers, tokens, false, false) : null;
            double[] w4 = run(dev, mod, blas, gemv, true, layers, tokens, tune, pdl);
            if (fp16 != null) {
                System.out.printf(Locale.ROOT, "W4A16 / fp16 decode speed: %.2fx (graph), %.2fx (eager)%s%n",
                        fp16[0] / w4[0], fp16[1] / w4[1], " (W4A16: the faster of default and tuned shapes)");
            }
        }
    }

    /** Builds the model in one weight format, decodes; returns ms/token {graph, eager}. */
    private static double[] run(CudaDevice dev, CudaModule mod, CublasHandle blas, W4a16Gemv gemv, boolean w4,
                                int L, int T, boolean tune, boolean pdl) {
        DecodeKernels k = new DecodeKernels(mod);
        List<Layer> layers = new ArrayList<>();
        List<DeviceBuffer> misc = new ArrayList<>();
        int seed = w4 ? 100_000 : 0;
        try {
            long kvBytes = (long) T * HKV * D * 4;
            for (int l = 0; l < L; l++) {
                int s = seed + 16 * l;
                layers.add(new Layer(linear(dev, k, gemv, w4, 3 * C, C, s), linear(dev, k, gemv, w4, C, C, s + 4),
                        linear(dev, k, gemv, w4, 2 * F, C, s + 8), linear(dev, k, gemv, w4, C, F, s + 12), ones(dev, k, C),
                        ones(dev, k, C), dev.alloc(kvBytes), dev.alloc(kvBytes)));
            }
            DeviceBuffer emb = keep(misc, dev.alloc((long) V * C * 2)), lm = keep(misc, dev.alloc((long) V * C * 2));
            k.fillH(emb, (long) V * C, seed + 7001, -1f, 1f);
            float a = (float) Math.sqrt(3.0 / C);
            k.fillH(lm, (long) V * C, seed + 7002, -a, a);
            DeviceBuffer nf = keep(misc, ones(dev, k, C));
            DecodeKernels.Buffers bufs = DecodeKernels.Buffers.alloc(dev, C, F, H, HKV, D, V, T);
            DeviceBuffer x = bufs.x(), xh = bufs.xh(), qkv = bufs.qkv(), att = bufs.att(), gu = bufs.gu(),
                    hh = bufs.hh(), logits = bufs.logits(), pos = bufs.pos(), toks = bufs.toks(), cos = bufs.cos(),
                    sin = bufs.sin();
            misc.addAll(bufs.all());
            SplittableRandom r = new SplittableRandom(42);
            int[] ids = new int[T];
            for (int t = 0; t < T; t++) {
                ids[t] = r.nextInt(V);
            }
            dev.upload(MemorySegment.ofArray(ids), toks, 0);
            POS.set(pos);
            float[] ct = new float[T * D / 2], st = new float[T * D / 2];
            for (int t = 0; t < T; t++) {
                for (int i = 0; i < D / 2; i++) {
                    double ang = t / Math.pow(10000.0, 2.0 * i / D);
                    ct[t * D / 2 + i] = (float) Math.cos(ang);
                    st[t * D / 2 + i] = (float) Math.sin(ang);
                }
            }
            dev.upload(MemorySegment.ofArray(ct), cos, 0);
            dev.upload(MemorySegment.ofArray(st), sin, 0);
            dev.synchronize();

            long weightBytes = lm.bytes() + C * 2L; // LM head and one embedding row
            for (Layer ly : layers) {
                weightBytes += ly.qkv().bytes() + ly.o().bytes() + ly.gu().bytes() + ly.down().bytes() + 2L * C * 4;
            }
            W4a16Gemv.Tc[] shapes = new W4a16Gemv.Tc[4]; // per linear (qkv, o, gate|up, down); null: the default
            Runnable token = () -> {
                k.embed.launch(C / 256, 1, 256, 0, emb, toks, pos, x, C);
                for (Layer ly : layers) {
                    k.layer(blas, gemv, ly.qkv(), ly.o(), ly.gu(), ly.down(), ly.n1(), ly.n2(), ly.kc(), ly.vc(), shapes,
                            bufs, C, F, H, HKV, D, T, EPS);
                }
                k.norm.launch(1, 1, 1024, 0, x, nf, xh, C, EPS);
                blas.gemmRowMajorF16(false, true, 1, V, C, 1f, xh.address(), C, lm.address(), C, 0f,
                        logits.address(), V);
                k.advance.launch(1, 1, 1, 0, pos);
            };
            float[] plainLogits = new float[V];
            double[] result = decode(dev, T, token, logits, weightBytes, w4 ? "W4A16" : "fp16", plainLogits);
            if (w4 && pdl) {
                String why = gemv.pdlUnsupported();
                if (why != null) {
                    System.out.println("W4A16 pdl: programmatic dependent launch unavailable (" + why + "); not run");
                }
                for (W4a16Gemv.Pdl m : new W4a16Gemv.Pdl[] {W4a16Gemv.Pdl.AFTER_LOADS, W4a16Gemv.Pdl.AT_START}) {
                    if (why != null) {
                        break;
                    }
                    gemv.pdl(m);
                    float[] pdlLogits = new float[V];
                    double[] t;
                    try {
                        t = decode(dev, T, token, logits, weightBytes,
                                m == W4a16Gemv.Pdl.AT_START ? "W4A16 pdl@start" : "W4A16 pdl", pdlLogits);
                    } finally {
                        gemv.pdl(W4a16Gemv.Pdl.OFF);
                    }
                    int differ = 0;
                    for (int i = 0; i < V; i++) {
                        differ += Float.floatToRawIntBits(pdlLogits[i]) != Float.floatToRawIntBits(plainLogits[i]) ? 1 : 0;
                    }
                    System.out.printf(Locale.ROOT, "%s: final logits equal to the plain launches' bit for bit: %s (%d of %d"
                            + " differ); graph %.3f vs %.3f ms/token (%.1f vs %.1f tok/s)%n", m, differ == 0, differ, V,
                            t[0], result[0], 1000 / t[0], 1000 / result[0]);
                }
            }
            if (w4 && tune) {
                // per linear: time each candidate shape over the L layers' own weights (a graph of L launches,
                // distinct weights: DRAM, as in decoding), keep the fastest, then decode again with them
                DeviceBuffer[][] io = {{xh, qkv}, {att, x}, {xh, gu}, {hh, x}};
                String[] role = {"q|k|v", "o", "gate|up", "down"};
                System.out.printf(Locale.ROOT, "  W4A16 per-linear shapes over the %d layers' weights (us per launch,"
                        + " median of 7 graph replays; GB/s of weights):%n", L);
                for (int li = 0; li < 4; li++) {
                    int rr = li;
                    boolean acc = li == 1 || li == 3;
                    DecodeLinear first = lin(layers.get(0), li);
                    // null: gemvTiled's own choice (the split kernel where it takes the group), then tensor-core shapes
                    String def = gemv.describeTiled(first.N(), first.K(), first.group());
                    W4a16Gemv.Tc best = null;
                    double bestUs = Double.MAX_VALUE, defUs = Double.NaN;
                    for (W4a16Gemv.Tc c : candidates(gemv.defaultTiledTc(first.N(), first.K()), acc)) {
                        double us = W4a16Bench.median(W4a16Bench.graphTime(dev, layers.size(), i ->
                                lin(layers.get(i), rr).apply(blas, gemv, c, io[rr][0], io[rr][1], acc)));
                        if (c == null) {
                            defUs = us;
                        }
                        if (us < bestUs) {
                            bestUs = us;
                            best = c;
                        }
                    }
                    shapes[li] = best;
                    String bestName = best == null ? def : best.toString();
                    long bytes = first.bytes();
                    System.out.printf(Locale.ROOT, "  %-8s %5d x %-5d default %-12s %7.2f us %5.0f GB/s   best %-14s"
                            + " %7.2f us %5.0f GB/s%n", role[li], first.N(), first.K(), def, defUs, bytes / defUs / 1e3,
                            bestName, bestUs, bytes / bestUs / 1e3);
                    System.out.printf(Locale.ROOT, "RESULT|linear|%s|%d x %d|%s|%.2f|%.0f|%s|%.2f|%.0f%n",
                            role[li].replace('|', '/'), // the RESULT line's fields are |-separated
                            first.N(), first.K(), def, defUs, bytes / defUs / 1e3, bestName, bestUs, bytes / bestUs / 1e3);
                }
                double[] tuned = decode(dev, T, token, logits, weightBytes, "W4A16*", new float[V]);
                if (tuned[0] < result[0]) {
                    result = tuned;
                }
            }
            return result;
        } finally {
            dev.synchronize();
            for (Layer ly : layers) {
                ly.qkv().close();
                ly.o().close();
                ly.gu().close();
                ly.down().close();
                ly.n1().close();
                ly.n2().close();
                ly.kc().close();
                ly.vc().close();
            }
            for (DeviceBuffer b : misc) {
                b.close();
            }
        }
    }

    /**
     * Decodes T tokens from position 0 eagerly (launches from Java) and as replays of the token's
     * graph; prints both; returns ms/token {graph, eager}; the graph run's final logits go to graphLogits.
     */
    private static double[] decode(CudaDevice dev, int T, Runnable token, DeviceBuffer logits, long weightBytes,
                                   String label, float[] graphLogits) {
        DeviceBuffer pos = POS.get();
        dev.fill32(pos, 0, 1);
        token.run(); // warm-up (cuBLAS picks its kernels, lazy workspaces), then from position 0 again
        dev.fill32(pos, 0, 1);
        dev.synchronize();
        double[] eager = timed(dev, T, token);
        float[] eagerLogits = new float[V];
        dev.download(logits, 0, MemorySegment.ofArray(eagerLogits));
        double[] graphMs;
        try (CudaGraph graph = CudaGraph.capture(dev, token)) {
            dev.fill32(pos, 0, 1);
            graph.launch();
            dev.fill32(pos, 0, 1);
            dev.synchronize();
            graphMs = timed(dev, T, graph::launch);
            dev.download(logits, 0, MemorySegment.ofArray(graphLogits));
        }
        double maxDiff = 0, maxAbs = 0;
        boolean finite = true;
        for (int i = 0; i < V; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(eagerLogits[i] - graphLogits[i]));
            maxAbs = Math.max(maxAbs, Math.abs(eagerLogits[i]));
            finite &= Float.isFinite(eagerLogits[i]);
        }
        for (int m = 0; m < 2; m++) {
            double[] t = m == 0 ? graphMs : eager;
            String how = m == 0 ? "graph" : "eager";
            double gbs = weightBytes / (t[0] * 1e-3) / 1e9;
            System.out.printf(Locale.ROOT, "%-8s %-6s %10.1f %10.3f %14.3f %10.0f %12.3f%n", label, how, 1000 / t[0],
                    t[0], weightBytes / 1e9, gbs, t[1]);
            System.out.printf(Locale.ROOT, "RESULT|decode|%s|%s|%.1f|%.3f|%.3f|%.0f%n", label, how, 1000 / t[0], t[0],
                    weightBytes / 1e9, gbs);
        }
        System.out.printf(Locale.ROOT, "%-8s final logits: graph vs eager max |diff| %.3g (max |logit| %.3g), all finite:"
                + " %s%n", label, maxDiff, maxAbs, finite);
        return new double[] {graphMs[0], eager[0]};
    }

    /** The decode position buffer of the model being run (set by run). */
    private static final ThreadLocal<DeviceBuffer> POS = new ThreadLocal<>();


    private static DecodeLinear lin(Layer ly, int r) {
        return switch (r) {
            case 0 -> ly.qkv();
            case 1 -> ly.o();
            case 2 -> ly.gu();
            default -> ly.down();
        };
    }

    /**
     * Shapes tried per linear: null (gemvTiled's default), the tensor-core kernel's default tiled shape and
     * its variations; K splits (atomic adds) only where the linear accumulates.
     */
    private static List<W4a16Gemv.Tc> candidates(W4a16Gemv.Tc tcDefault, boolean acc) {
        List<W4a16Gemv.Tc> c = new ArrayList<>();
        c.add(null);
        c.add(tcDefault);
        for (int[] su : W4a16Gemv.compiled()) {
            for (int w : new int[] {4, 8, 16}) {
                for (int ks : acc ? new int[] {1, 2, 4} : new int[] {1}) {
                    W4a16Gemv.Tc t = new W4a16Gemv.Tc(su[0], su[1], w, ks);
                    if (!t.equals(tcDefault)) {
                        c.add(t);
                    }
                }
            }
        }
        return c;
    }

    /** {ms per token on the GPU (events around all T), host ms per token to queue them}. */
    private static double[] timed(CudaDevice dev, int T, Runnable token) {
        try (CudaEvent a = dev.event(); CudaEvent b = dev.event()) {
            a.record();
            long t0 = System.nanoTime();
            for (int t = 0; t < T; t++) {
                token.run();
            }
            long host = System.nanoTime() - t0;
            b.record();
            return new double[] {b.millisSince(a) / T, host / 1e6 / T};
        }
    }

    private static DecodeLinear linear(CudaDevice dev, DecodeKernels k, W4a16Gemv gemv, boolean w4, int N, int K, int seed) {
        if (!w4) {
            DeviceBuffer w = dev.alloc((long) N * K * 2);
            float a = (float) Math.sqrt(3.0 / K); // std 1/sqrt(K)
            k.fillH(w, (long) N * K, seed, -a, a);
            return DecodeLinear.dense(N, K, w);
        }
        int G = K / GROUP;
        DeviceBuffer qz = dev.alloc((long) G * N / 8 * 4), sc = dev.alloc((long) G * N * 2);
        DeviceBuffer qw = dev.alloc(W4a16Gemv.tiledBytes(K, N));
        // GPTQ-layout codes, rearranged into the tiled layout the GEMV streams (as a loader would do once)
        try (DeviceBuffer gptq = dev.alloc((long) K / 8 * N * 4)) {
            k.fillU(gptq, (long) K / 8 * N, seed);
            gemv.tile(gptq, qw, K, N);
            dev.synchronize();
        }
        k.fillU(qz, (long) G * N / 8, seed + 1);
        // (q − z) has std ~6.5 for uniform codes and zeros: scales near 1/(6.5·sqrt(K)) keep std(w) ~ 1/sqrt(K)
        float s = (float) (1.0 / (6.5 * Math.sqrt(K)));
        k.fillH(sc, (long) G * N, seed + 2, 0.5f * s, 1.5f * s);
        return new DecodeLinear(N, K, GROUP, true, null, qw, qz, sc);
    }

    private static DeviceBuffer ones(CudaDevice dev, DecodeKernels k, int n) {
        DeviceBuffer b = dev.alloc(n * 4L);
        k.fillF.launch(W4a16Bench.blocks(n), 1, 256, 0, b, (long) n, 1f);
        return b;
    }

    private static DeviceBuffer keep(List<DeviceBuffer> list, DeviceBuffer b) {
        list.add(b);
        return b;
    }
}
