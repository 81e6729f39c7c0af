package dev.shrink.gptq;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.synth.SyntheticModel;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaGptq;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.GemmMath;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Times GPTQ's GPU block loop ({@link DeviceGptq}) on a real model folder with a calibration
 * token file, or on a model with given shapes whose random weights are made in memory, per block,
 * as the loop asks for them (Llama-2-7B's by default: 32 layers, 4096 hidden, 11008 intermediate,
 * 32 heads, vocabulary 32000; 128 random windows of 2048 tokens, the reference's job in
 * shared/golden/ref-gptq-speed-llama2-7b-shapes-h200.json). The codes come back to the host as in
 * a real run and are checked, then dropped. Prints the time, its phases and the peak GPU memory,
 * and a last line {@code RESULT|job|seconds|peak allocations GiB|peak device use GiB|details} for
 * scripts/device-bench.sh. A benchmark for a person to read, not a test.
 *
 * <pre>
 * GptqDeviceBench [--layers 32 --hidden 4096 --intermediate 11008 --heads 32 --kv-heads 32 --vocab 32000]
 *                 [--samples 128 --seqlen 2048] [--math tf32|fp32] [--bits 4 --group 128] [--act-order]
 * GptqDeviceBench --model DIR [--calib-tokens FILE | --samples 128 --seqlen 2048] [--layers N] [--math fp32|tf32] ...
 * </pre>
 */
public final class GptqDeviceBench {
    private GptqDeviceBench() {
    }

    public static void main(String[] args) {
        int layers = 32, hidden = 4096, inter = 11008, heads = 32, kvHeads = 32, vocab = 32000;
        int samples = 128, seqlen = 2048, bits = 4, group = 128;
        boolean actOrder = false, layersGiven = false;
        GemmMath math = GemmMath.TF32;
        Path model = null, calib = null;
        long seed = 0;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--layers" -> {
                    layers = Integer.parseInt(args[++i]);
                    layersGiven = true;
                }
                case "--hidden" -> hidden = Integer.parseInt(args[++i]);
                case "--intermediate" -> inter = Integer.parseInt(args[++i]);
                case "--heads" -> heads = Integer.parseInt(args[++i]);
                case "--kv-heads" -> kvHeads = Integer.parseInt(args[++i]);
                case "--vocab" -> vocab = Integer.parseInt(args[++i]);
                case "--samples" -> samples = Integer.parseInt(args[++i]);
                case "--seqlen" -> seqlen = Integer.parseInt(args[++i]);
                case "--bits" -> bits = Integer.parseInt(args[++i]);
                case "--group" -> group = Integer.parseInt(args[++i]);
                case "--act-order" -> actOrder = true;
                case "--math" -> math = GemmMath.parse(args[++i]);
                case "--seed" -> seed = Long.parseLong(args[++i]);
                case "--model" -> model = Path.of(args[++i]);
                case "--calib-tokens" -> calib = Path.of(args[++i]);
                default -> {
                    System.err.println("GptqDeviceBench: unknown option " + a);
                    System.exit(2);
                }
            }
        }
        GptqStage.Config cfg = new GptqStage.Config("gptq", QuantScheme.of(bits, group, true), actOrder, false, true,
                0.01, 128, 8);
        try (CudaOps ops = CudaOps.open(0)) {
            ops.setMath(math);
            CudaDevice dev = ops.device();
            String job;
            ModelConfig mc;
            ArchitectureSpec spec;
            WeightSource src;
            int[][] windows;
            ModelDir dir = null;
            if (model != null) {
                dir = ModelDir.open(model);
                mc = dir.config();
                if (layersGiven && layers < mc.layers()) { // the first blocks only (a timing check)
                    com.fasterxml.jackson.databind.node.ObjectNode raw = mc.raw().deepCopy();
                    raw.put("num_hidden_layers", layers);
                    mc = ModelConfig.parse(raw, model.resolve("config.json"));
                }
                spec = dir.spec();
                src = WeightSource.of(dir.weights());
                if (calib != null) {
                    windows = TokenWindows.read(calib);
                } else { // random tokens, as for the in-memory model (a `shrink synth` folder)
                    windows = SyntheticModel.randomTokens(samples, seqlen, mc.vocab(), seed);
                }
                job = model.getFileName().toString() + (layersGiven ? " (" + mc.layers() + " layers)" : "");
            } else {
                mc = config(layers, hidden, inter, heads, kvHeads, vocab);
                spec = ArchitectureSpec.LLAMA;
                src = new RandomWeights(mc, spec, seed);
                windows = SyntheticModel.randomTokens(samples, seqlen, vocab, seed);
                job = String.format("random %d layers %d/%d, %d heads", layers, hidden, inter, heads);
            }
            String what = String.format("%s; %d x %d tokens; w%d g%d sym%s; %s", job, windows.length, windows[0].length,
                    bits, group, actOrder ? " act-order" : "", math.label());
            System.out.println("GPTQ on " + ops.name() + ": " + what);
            long[] maxUsed = {dev.usedMemory()};
            long[] checked = {0};
            dev.resetPeak();
            long t0 = System.nanoTime();
            int codeBits = bits;
            DeviceGptq.Sink sink = (name, N, K, r, bias) -> {
                maxUsed[0] = Math.max(maxUsed[0], dev.usedMemory());
                checked[0] += check(name, N, K, r, codeBits);
            };
            GptqStage.Result res = DeviceGptq.run(mc, spec, src, windows, cfg, ops, true, sink);
            double s = (System.nanoTime() - t0) / 1e9;
            double peakAlloc = dev.peakAllocatedBytes() / (double) (1L << 30);
            double peakUsed = maxUsed[0] / (double) (1L << 30);
            GptqStage.Phases p = res.phases();
            double loss = res.layers().stream().mapToDouble(GptqStage.LayerReport::loss).sum();
            System.out.printf(Locale.ROOT, "%d linears quantized, %d codes checked, sum of losses %.4g%n",
                    res.layers().stream().filter(l -> l.status().equals("quantized")).count(), checked[0], loss);
            System.out.printf(Locale.ROOT, "total %.1f s: forward %.1f s, Hessians %.1f s, Cholesky/inverse %.1f s,"
                    + " column loop %.1f s (%.2f s per block)%n", s, p.forward(), p.hessian(), p.cholesky(),
                    p.columns(), s / mc.layers());
            System.out.printf(Locale.ROOT, "peak GPU memory: %.2f GiB allocated by the loop, %.2f GiB in use on the"
                    + " device (cuMemGetInfo, with the context and the libraries' workspaces)%n", peakAlloc, peakUsed);
            System.out.printf(Locale.ROOT, "RESULT|gptq %s|%.1f|%.2f|%.2f|%s%n", job, s, peakAlloc, peakUsed, what);
            if (dir != null) {
                dir.close();
            }
        }
    }

    /** Codes in range and the group parameters finite: a cheap sanity check of what came back. */
    private static long check(String name, int N, int K, CudaGptq.Result r, int bits) {
        int maxq = (1 << bits) - 1;
        for (byte c : r.codes()) {
            if ((c & 0xff) > maxq) {
                throw new IllegalStateException(name + ": code " + (c & 0xff) + " above " + maxq);
            }
        }
        for (float x : r.scales()) {
            if (!(x > 0) || !Float.isFinite(x)) {
                throw new IllegalStateException(name + ": scale " + x);
            }
        }
        if (!Double.isFinite(r.loss())) {
            throw new IllegalStateException(name + ": loss " + r.loss());
        }
        return (long) N * K;
    }

    /** n windows of T token ids uniform over the vocabulary (seeded). */
    static ModelConfig config(int layers, int hidden, int inter, int heads, int kvHeads, int vocab) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", hidden);
        c.put("intermediate_size", inter);
        c.put("num_hidden_layers", layers);
        c.put("num_attention_heads", heads);
        c.put("num_key_value_heads", kvHeads);
        c.put("vocab_size", vocab);
        c.put("max_position_embeddings", 4096);
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", 10000.0);
        c.put("hidden_act", "silu");
        c.put("tie_word_embeddings", false);
        return ModelConfig.parse(c, Path.of("synthetic/config.json"));
    }

    /**
     * Random weights with a model's names and shapes, made when asked for (in parallel, the same
     * values for the same name and seed): linears and embeddings ~ N(0, 0.02²) as transformers
     * initialises them (a sum of four uniforms, near enough to normal for timing), norms ~ 1.
     */
    static final class RandomWeights implements WeightSource {
        private final java.util.Map<String, long[]> shapes = new java.util.HashMap<>();
        private final long seed;

        RandomWeights(ModelConfig mc, ArchitectureSpec spec, long seed) {
            this.seed = seed;
            int C = mc.hidden();
            shapes.put(spec.embedTokens(), new long[] {mc.vocab(), C});
            for (int l = 0; l < mc.layers(); l++) {
                shapes.put(spec.layer(l, spec.inputNorm()), new long[] {C});
                shapes.put(spec.layer(l, spec.postAttentionNorm()), new long[] {C});
                for (ArchitectureSpec.Linear lin : spec.linears()) {
                    long[] nk = switch (lin.role()) {
                        case Q -> new long[] {mc.qDim(), C};
                        case K, V -> new long[] {mc.kvDim(), C};
                        case O -> new long[] {C, mc.qDim()};
                        case GATE, UP -> new long[] {mc.intermediate(), C};
                        case DOWN -> new long[] {C, mc.intermediate()};
                    };
                    shapes.put(spec.layer(l, lin.name()) + ".weight", nk);
                }
            }
        }

        @Override
        public boolean has(String name) {
            return shapes.containsKey(name);
        }

        @Override
        public long[] shape(String name) {
            return shapes.get(name).clone();
        }

        @Override
        public float[] floats(String name) {
            long[] shape = shapes.get(name);
            if (shape == null) {
                throw new IllegalArgumentException("no tensor " + name);
            }
            long count = 1;
            for (long d : shape) {
                count *= d;
            }
            long n = count;
            float[] x = new float[Math.toIntExact(n)];
            boolean norm = shape.length == 1;
            long base = seed * 0x9E3779B97F4A7C15L + name.hashCode();
            int chunk = 1 << 20;
            IntStream.range(0, (int) ((n + chunk - 1) / chunk)).parallel().forEach(c -> {
                SplittableRandom r = new SplittableRandom(base + c * 0x632BE59BD9B4E019L);
                int from = c * chunk, to = (int) Math.min(n, (long) from + chunk);
                for (int i = from; i < to; i++) {
                    double u = r.nextDouble() + r.nextDouble() + r.nextDouble() + r.nextDouble() - 2.0; // var 1/3
                    x[i] = norm ? (float) (1.0 + 0.05 * u) : (float) (0.02 * 1.7320508 * u);
                }
            });
            return x;
        }
    }
}
