package dev.shrink.core.synth;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.stream.IntStream;

/**
 * Writes a Hugging Face folder of a LLaMA, Qwen3 or Qwen3-MoE with random weights of given shapes
 * (what {@code shrink synth} does): {@code config.json}, {@code generation_config.json}, the weights as bf16 or fp16
 * safetensors, sharded with {@code model.safetensors.index.json} when they exceed the shard size
 * (FORMATS.md), and a tokenizer (copied from a folder, or a small generated word-level one whose
 * vocabulary is the model's). For timing compression at real shapes without downloading a model.
 *
 * <p>Values: linears and embeddings ~ N(0, 0.02²) as transformers initialises them (an Irwin–Hall
 * sum of four uniforms, scaled to that variance), norms 1 + 0.05·u. Each tensor is made from the
 * seed and its name in chunks of 2^20 values generated in parallel, so the same seed gives the same
 * bytes whatever the thread count. The folder appears atomically (a temporary sibling renamed into
 * place); one shard is in memory at a time.
 */
public final class SyntheticModel {
    private static final int CHUNK = 1 << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    private SyntheticModel() {
    }

    /**
     * {@code n} windows of {@code T} token ids drawn uniformly from [0, vocab) (SplittableRandom of
     * {@code seed + 1}): calibration input for timing runs on a synthetic model, whose weights make
     * any text as good as any other.
     */
    public static int[][] randomTokens(int n, int T, int vocab, long seed) {
        int[][] windows = new int[n][T];
        SplittableRandom r = new SplittableRandom(seed + 1);
        for (int[] w : windows) {
            for (int t = 0; t < T; t++) {
                w[t] = r.nextInt(vocab);
            }
        }
        return windows;
    }

    /**
     * The families a synthetic folder can be: LLaMA, Qwen3 (per-head q/k norms, an explicit head_dim)
     * and Qwen3-MoE (Qwen3's attention, every MLP a mixture of experts). The tensors come from the
     * family's {@link ArchitectureSpec}; the constants are what the family's configs hold.
     */
    public enum Family {
        LLAMA("llama", ArchitectureSpec.LLAMA, 10000.0, 1e-5),
        QWEN3("qwen3", ArchitectureSpec.QWEN3, 1e6, 1e-6),
        QWEN3_MOE("qwen3-moe", ArchitectureSpec.QWEN3_MOE, 1e6, 1e-6);

        private final String option;
        private final ArchitectureSpec spec;
        private final double ropeTheta;
        private final double rmsNormEps;

        Family(String option, ArchitectureSpec spec, double ropeTheta, double rmsNormEps) {
            this.option = option;
            this.spec = spec;
            this.ropeTheta = ropeTheta;
            this.rmsNormEps = rmsNormEps;
        }

        /** The name {@code --family} takes: llama, qwen3, qwen3-moe. */
        public String option() {
            return option;
        }

        public ArchitectureSpec spec() {
            return spec;
        }

        public boolean moe() {
            return spec.moe() != null;
        }

        /** "llama", "qwen3" or "qwen3-moe" (also the model_type spellings). */
        public static Family parse(String s) {
            for (Family f : values()) {
                if (f.option.equalsIgnoreCase(s) || f.spec.family().equalsIgnoreCase(s)) {
                    return f;
                }
            }
            throw new IllegalArgumentException("unknown family '" + s + "' (llama, qwen3, qwen3-moe)");
        }
    }

    /**
     * A model's shapes. {@code experts}, {@code expertsPerToken} and {@code expertIntermediate} are
     * the mixture's (num_local_experts, num_experts_per_tok, moe_intermediate_size), 0 for a dense family.
     */
    public record Shape(Family family, int hidden, int intermediate, int layers, int heads, int kvHeads, int headDim,
                        int vocab, int maxPositions, int experts, int expertsPerToken, int expertIntermediate) {
        public Shape {
            java.util.Objects.requireNonNull(family, "family");
            if (hidden <= 0 || intermediate <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || vocab <= 0
                    || maxPositions <= 0) {
                throw new IllegalArgumentException("every dimension must be positive: hidden " + hidden + ", intermediate "
                        + intermediate + ", layers " + layers + ", heads " + heads + ", kv heads " + kvHeads + ", head dim "
                        + headDim + ", vocab " + vocab + ", max positions " + maxPositions);
            }
            if (heads % kvHeads != 0) {
                throw new IllegalArgumentException(heads + " heads are not a multiple of the " + kvHeads + " kv heads");
            }
            if (headDim % 2 != 0) {
                throw new IllegalArgumentException("the head dim " + headDim + " must be even (RoPE)");
            }
            if (family.moe()) {
                if (experts <= 0 || expertIntermediate <= 0 || expertsPerToken <= 0) {
                    throw new IllegalArgumentException("a mixture of experts needs positive --experts, --experts-per-token"
                            + " and --moe-intermediate, got " + experts + ", " + expertsPerToken + " and " + expertIntermediate);
                }
                if (expertsPerToken > experts) {
                    throw new IllegalArgumentException(expertsPerToken + " experts per token are more than the " + experts
                            + " experts");
                }
            } else if (experts != 0 || expertsPerToken != 0 || expertIntermediate != 0) {
                throw new IllegalArgumentException("--experts, --experts-per-token and --moe-intermediate are for"
                        + " --family qwen3-moe, not " + family.option());
            }
        }

        /** A LLaMA of head dim hidden / heads (the shapes {@code shrink synth} wrote before other families). */
        public Shape(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, int maxPositions) {
            this(Family.LLAMA, hidden, intermediate, layers, heads, kvHeads, evenSplit(hidden, heads), vocab, maxPositions,
                    0, 0, 0);
        }

        /** Parameters of the model (untied embeddings and head): the elements of its tensors. */
        public long parameters() {
            long n = 0;
            for (Spec t : tensors(this)) {
                n += t.numel();
            }
            return n;
        }
    }

    private static int evenSplit(int hidden, int heads) {
        if (heads <= 0 || hidden % heads != 0) {
            throw new IllegalArgumentException("hidden " + hidden + " is not a multiple of the " + heads + " heads"
                    + " (give --head-dim)");
        }
        return hidden / heads;
    }

    /** The presets' names, for help and error messages. */
    public static final List<String> PRESETS = List.of("llama2-7b", "llama2-13b", "qwen3-8b", "qwen3-30b-a3b");

    /**
     * The named shapes: Llama-2-7B and 13B, Qwen3-8B and Qwen3-30B-A3B as their published config.json
     * files give them (the MoE's intermediate_size 6144 is that of dense blocks, which it has none of).
     */
    public static Shape preset(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "llama2-7b" -> new Shape(4096, 11008, 32, 32, 32, 32000, 4096);
            case "llama2-13b" -> new Shape(5120, 13824, 40, 40, 40, 32000, 4096);
            case "qwen3-8b" -> new Shape(Family.QWEN3, 4096, 12288, 36, 32, 8, 128, 151936, 40960, 0, 0, 0);
            case "qwen3-30b-a3b" -> new Shape(Family.QWEN3_MOE, 2048, 6144, 48, 32, 4, 128, 151936, 40960, 128, 8, 768);
            default -> throw new IllegalArgumentException("unknown preset '" + name + "' (" + String.join(", ", PRESETS) + ")");
        };
    }

    /**
     * @param dtype         BF16 or F16
     * @param maxShardBytes a new shard starts when the next tensor would exceed this
     * @param tokenizerFrom a folder whose tokenizer files are copied, or null for a generated one
     * @param preset        the preset's name for config.json's record, or null
     */
    public record Options(Shape shape, DType dtype, long seed, long maxShardBytes, Path tokenizerFrom, String preset) {
        public Options {
            if (dtype != DType.BF16 && dtype != DType.F16) {
                throw new IllegalArgumentException("dtype must be bf16 or fp16, got " + dtype);
            }
            if (maxShardBytes <= 0) {
                throw new IllegalArgumentException("the shard size must be positive, got " + maxShardBytes);
            }
        }
    }

    /** What was written: weight files, bytes of tensor data, parameters, seconds. */
    public record Summary(Path dir, int files, long bytes, long parameters, double seconds) {
        /** One line: where, how much, how fast. */
        public String describe() {
            return String.format(Locale.ROOT, "wrote %s: %.3f B parameters, %.2f GiB in %d weight file%s, %.1f s (%.2f GB/s)",
                    dir, parameters / 1e9, bytes / (double) (1L << 30), files, files == 1 ? "" : "s", seconds,
                    bytes / 1e9 / Math.max(seconds, 1e-9));
        }
    }

    /** One tensor to make: name, shape, whether it is a norm (values near 1). */
    record Spec(String name, long[] shape, boolean norm) {
        long numel() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    /** The tensors of a folder of these shapes, from its config as {@link ModelConfig} reads it. */
    static List<Spec> tensors(Shape s) {
        ObjectNode c = config(new Options(s, DType.BF16, 0, 1, null, null));
        return tensors(ModelConfig.parse(c, Path.of("config.json")), s.family().spec());
    }

    /**
     * The tensors of the folder, in the order transformers saves them: embeddings, each block (input
     * norm, attention linears, per-head q/k norms, the MLP's norm, its linears or its router and
     * experts), the final norm, the head. The names and shapes are the spec's and the loader's
     * ({@link BlockWeights#linearShape}, {@link BlockWeights#moeLinears}), so every tensor
     * {@link BlockWeights#load} reads is here.
     */
    static List<Spec> tensors(ModelConfig cfg, ArchitectureSpec spec) {
        long C = cfg.hidden(), D = cfg.headDim();
        List<Spec> t = new ArrayList<>();
        t.add(new Spec(spec.embedTokens(), new long[] {cfg.vocab(), C}, false));
        for (int l = 0; l < cfg.layers(); l++) {
            boolean sparse = cfg.sparseLayer(l);
            t.add(new Spec(spec.layer(l, spec.inputNorm()), new long[] {C}, true));
            List<ArchitectureSpec.Linear> mlp = new ArrayList<>();
            for (ArchitectureSpec.Linear x : spec.linears()) {
                switch (x.role()) {
                    case GATE, UP, DOWN -> mlp.add(x);
                    default -> t.add(linear(spec.layer(l, x.name()), BlockWeights.linearShape(cfg, x.role())));
                }
            }
            if (spec.qNorm() != null) {
                t.add(new Spec(spec.layer(l, spec.qNorm()), new long[] {D}, true));
                t.add(new Spec(spec.layer(l, spec.kNorm()), new long[] {D}, true));
            }
            t.add(new Spec(spec.layer(l, spec.postAttentionNorm()), new long[] {C}, true));
            if (sparse) {
                for (var e : BlockWeights.moeLinears(cfg, spec).entrySet()) {
                    t.add(linear(spec.layer(l, e.getKey()), e.getValue()));
                }
            } else {
                for (ArchitectureSpec.Linear x : mlp) {
                    t.add(linear(spec.layer(l, x.name()), BlockWeights.linearShape(cfg, x.role())));
                }
            }
        }
        t.add(new Spec(spec.finalNorm(), new long[] {C}, true));
        if (!cfg.tiedEmbeddings()) {
            t.add(new Spec(spec.lmHead(), new long[] {cfg.vocab(), C}, false));
        }
        return t;
    }

    private static Spec linear(String base, int[] nk) {
        return new Spec(base + ".weight", new long[] {nk[0], nk[1]}, false);
    }

    /**
     * Writes the folder {@code out}.
     *
     * @param progress receives one line per shard written (may be null)
     * @throws ShrinkException naming the folder when it exists (without overwrite), the disk has not
     *                         room for it, the tokenizer folder is unusable, or on any write error
     *                         (nothing is left behind then)
     */
    public static Summary write(Path out, Options o, boolean overwrite, Consumer<String> progress) {
        long t0 = System.nanoTime();
        Shape s = o.shape();
        ObjectNode config = config(o);
        List<Spec> specs = tensors(ModelConfig.parse(config, out.resolve("config.json")), s.family().spec());
        long total = 0, parameters = 0;
        for (Spec t : specs) {
            total += t.numel() * o.dtype().byteSize();
            parameters += t.numel();
        }
        Path target = ModelFolderWriter.checkTarget(o.tokenizerFrom(), out, overwrite, "the synthetic model");
        ModelFolderWriter.checkSpace(target, total);
        if (o.tokenizerFrom() != null) {
            checkTokenizer(o.tokenizerFrom(), s.vocab());
        }
        // Shards: greedy in order, as SafetensorsWriter.writeModel packs them
        List<List<Spec>> shards = new ArrayList<>();
        List<Spec> cur = new ArrayList<>();
        long curBytes = 0;
        for (Spec t : specs) {
            long b = t.numel() * o.dtype().byteSize();
            if (!cur.isEmpty() && curBytes + b > o.maxShardBytes()) {
                shards.add(cur);
                cur = new ArrayList<>();
                curBytes = 0;
            }
            cur.add(t);
            curBytes += b;
        }
        shards.add(cur);
        int n = shards.size();
        long bytes = total;
        ModelFolderWriter.write(o.tokenizerFrom(), target, overwrite, "the synthetic model", tmp -> {
            Map<String, String> weightMap = new TreeMap<>();
            for (int i = 0; i < n; i++) {
                String file = n == 1 ? SafetensorsWriter.SINGLE_FILE : String.format("model-%05d-of-%05d.safetensors", i + 1, n);
                try (Arena arena = Arena.ofShared()) {
                    List<TensorData> data = new ArrayList<>();
                    for (Spec t : shards.get(i)) {
                        data.add(new TensorData(t.name(), o.dtype(), t.shape(), fill(arena, t, o)));
                        weightMap.put(t.name(), file);
                    }
                    SafetensorsWriter.write(tmp.resolve(file), data, null);
                }
                if (progress != null) {
                    progress.accept(String.format(Locale.ROOT, "wrote %s (%d of %d, %.1f s)", file, i + 1, n,
                            (System.nanoTime() - t0) / 1e9));
                }
            }
            if (n > 1) {
                ObjectNode index = JSON.createObjectNode();
                index.putObject("metadata").put("total_size", bytes);
                ObjectNode wm = index.putObject("weight_map");
                weightMap.forEach(wm::put);
                ModelFolderWriter.writeJson(tmp.resolve("model.safetensors.index.json"), index);
            }
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), config);
            ObjectNode gen = JSON.createObjectNode();
            gen.put("bos_token_id", 1).put("eos_token_id", 2).put("pad_token_id", 0);
            ModelFolderWriter.writeJson(tmp.resolve("generation_config.json"), gen);
            if (o.tokenizerFrom() != null) {
                copyTokenizer(o.tokenizerFrom(), tmp);
            } else {
                ModelFolderWriter.writeJson(tmp.resolve("tokenizer.json"), wordLevelTokenizer(s.vocab()));
                ObjectNode tc = JSON.createObjectNode();
                tc.put("tokenizer_class", "PreTrainedTokenizerFast").put("bos_token", "<s>").put("eos_token", "</s>")
                        .put("unk_token", "<unk>").put("pad_token", "<unk>").put("model_max_length", s.maxPositions());
                ModelFolderWriter.writeJson(tmp.resolve("tokenizer_config.json"), tc);
            }
        });
        return new Summary(target, n, total, parameters, (System.nanoTime() - t0) / 1e9);
    }

    /** The tensor's values as bf16/fp16 in native memory, chunks generated in parallel. */
    static MemorySegment fill(Arena arena, Spec t, Options o) {
        long count = t.numel();
        MemorySegment seg = arena.allocate(count * 2, 8);
        long base = o.seed() * 0x9E3779B97F4A7C15L + t.name().hashCode();
        boolean bf16 = o.dtype() == DType.BF16;
        int chunks = (int) ((count + CHUNK - 1) / CHUNK);
        IntStream.range(0, chunks).parallel().forEach(c -> {
            SplittableRandom r = new SplittableRandom(base + c * 0x632BE59BD9B4E019L);
            long from = (long) c * CHUNK, to = Math.min(count, from + CHUNK);
            for (long i = from; i < to; i++) {
                long x = r.nextLong();
                // Irwin–Hall: the sum of four 16-bit uniforms on [0, 1), minus 2: mean 0, variance 1/3
                double u = ((x & 0xffff) + ((x >>> 16) & 0xffff) + ((x >>> 32) & 0xffff) + (x >>> 48)) / 65536.0 - 2.0;
                float v = t.norm() ? (float) (1.0 + 0.05 * u) : (float) (0.02 * 1.7320508075688772 * u);
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, i * 2, bf16 ? toBf16(v) : Float.floatToFloat16(v));
            }
        });
        return seg;
    }

    /** float → bf16, round to nearest even (the values here are finite). */
    static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        return (short) ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16);
    }

    /**
     * config.json as transformers writes the family's (LLaMA's keys; Qwen3's and Qwen3-MoE's as in the
     * fixtures of eval/src/test/resources/arch, written by transformers 5, with rope_theta also at the
     * top level for transformers 4), plus the {@code shrink.synthetic} record of how it was made.
     */
    static ObjectNode config(Options o) {
        Shape s = o.shape();
        Family f = s.family();
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add(f.spec().architectures().getFirst());
        c.put("model_type", f.spec().family());
        c.put("hidden_size", s.hidden());
        c.put("intermediate_size", s.intermediate());
        c.put("num_hidden_layers", s.layers());
        c.put("num_attention_heads", s.heads());
        c.put("num_key_value_heads", s.kvHeads());
        c.put("head_dim", s.headDim());
        c.put("vocab_size", s.vocab());
        c.put("max_position_embeddings", s.maxPositions());
        c.put("rms_norm_eps", f.rmsNormEps);
        c.put("rope_theta", f.ropeTheta);
        c.put("hidden_act", "silu");
        c.put("attention_bias", false);
        if (f == Family.LLAMA) {
            c.put("mlp_bias", false);
        } else {
            c.putObject("rope_parameters").put("rope_theta", f.ropeTheta).put("rope_type", "default");
            c.put("attention_dropout", 0.0);
            c.put("initializer_range", 0.02);
            c.putNull("sliding_window");
            c.put("use_sliding_window", false);
            c.put("use_cache", true);
        }
        if (f == Family.QWEN3) {
            c.put("max_window_layers", s.layers());
            ArrayNode types = c.putArray("layer_types");
            for (int l = 0; l < s.layers(); l++) {
                types.add("full_attention");
            }
        }
        if (f.moe()) {
            c.put("num_local_experts", s.experts()); // transformers 5's name for num_experts
            c.put("num_experts_per_tok", s.expertsPerToken());
            c.put("moe_intermediate_size", s.expertIntermediate());
            c.put("norm_topk_prob", true);
            c.put("decoder_sparse_step", 1);
            c.putArray("mlp_only_layers");
            c.put("output_router_logits", false);
            c.put("router_aux_loss_coef", 0.001);
        }
        c.put("tie_word_embeddings", false);
        c.put("bos_token_id", 1);
        c.put("eos_token_id", 2);
        c.put("pad_token_id", 0);
        c.put("torch_dtype", o.dtype() == DType.BF16 ? "bfloat16" : "float16");
        ObjectNode synth = c.putObject("shrink").putObject("synthetic");
        synth.put("seed", o.seed());
        if (o.preset() != null) {
            synth.put("preset", o.preset());
        }
        synth.put("init", "linears and embeddings N(0, 0.02^2) (Irwin-Hall of 4 uniforms), norms 1 + 0.05 u");
        return c;
    }

    /**
     * A word-level tokenizer.json with the model's vocabulary: {@code <unk>}, {@code <s>},
     * {@code </s>}, then {@code w3 .. w(V−1)}; whitespace pre-tokenization. Enough for tools that
     * need a tokenizer to load the folder; not for meaningful text.
     */
    static ObjectNode wordLevelTokenizer(int vocab) {
        ObjectNode t = JSON.createObjectNode();
        t.put("version", "1.0");
        t.putNull("truncation");
        t.putNull("padding");
        ArrayNode added = t.putArray("added_tokens");
        String[] special = {"<unk>", "<s>", "</s>"};
        for (int i = 0; i < Math.min(3, vocab); i++) {
            added.addObject().put("id", i).put("content", special[i]).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        t.putNull("normalizer");
        t.putObject("pre_tokenizer").put("type", "Whitespace");
        t.putNull("post_processor");
        t.putNull("decoder");
        ObjectNode model = t.putObject("model");
        model.put("type", "WordLevel");
        ObjectNode v = model.putObject("vocab");
        for (int i = 0; i < vocab; i++) {
            v.put(i < 3 ? special[i] : "w" + i, i);
        }
        model.put("unk_token", "<unk>");
        return t;
    }

    private static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "tokenizer.model");

    /** The tokenizer.json of {@code dir}, checked: its ids must fit the model's vocabulary. */
    private static void checkTokenizer(Path dir, int vocab) {
        Path file = dir.resolve("tokenizer.json");
        if (!Files.isRegularFile(file)) {
            throw ShrinkException.at(dir, "no tokenizer.json to copy (--tokenizer takes a model or tokenizer folder)");
        }
        long max = dev.shrink.core.model.Tokenizer.largestId(file);
        if (max >= vocab) {
            throw ShrinkException.at(file, "has token id " + max + ", outside the model's vocabulary of " + vocab
                    + " (give --vocab " + (max + 1) + " or more)");
        }
    }

    private static void copyTokenizer(Path from, Path to) throws IOException {
        for (String f : TOKENIZER_FILES) {
            Path src = from.resolve(f);
            if (Files.isRegularFile(src)) {
                Files.copy(src, to.resolve(f));
            }
        }
    }

    /**
     * For machines without the CLI's jars (the GPU machine):
     * {@code SyntheticModel OUT [--preset NAME | [--family F] --hidden C ...] [--dtype bf16|fp16] [--seed S] [--overwrite]}.
     */
    public static void main(String[] args) {
        try {
            Args a = Args.parse(args);
            Summary r = write(a.out, a.options, a.overwrite, System.out::println);
            System.out.println(r.describe());
        } catch (IllegalArgumentException | ShrinkException e) {
            System.err.println("synth: " + e.getMessage());
            System.exit(2);
        }
    }

    /** The command line shared by {@link #main} and {@code shrink synth}'s tests. */
    record Args(Path out, Options options, boolean overwrite) {
        static Args parse(String[] args) {
            Path out = null, tok = null;
            String preset = null, dtype = "bf16", family = null;
            Integer hidden = null, inter = null, layers = null, heads = null, kvHeads = null, vocab = null, maxPos = null;
            Integer headDim = null, experts = null, perToken = null, moeInter = null;
            long seed = 0, shard = 4L << 30;
            boolean overwrite = false;
            for (int i = 0; i < args.length; i++) {
                String x = args[i];
                if (!x.startsWith("--")) {
                    if (out != null) {
                        throw new IllegalArgumentException("one output folder, got " + out + " and " + x);
                    }
                    out = Path.of(x);
                    continue;
                }
                if (x.equals("--overwrite")) {
                    overwrite = true;
                    continue;
                }
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(x + " needs a value");
                }
                String v = args[++i];
                switch (x) {
                    case "--preset" -> preset = v;
                    case "--hidden" -> hidden = Integer.parseInt(v);
                    case "--intermediate" -> inter = Integer.parseInt(v);
                    case "--layers" -> layers = Integer.parseInt(v);
                    case "--heads" -> heads = Integer.parseInt(v);
                    case "--kv-heads" -> kvHeads = Integer.parseInt(v);
                    case "--head-dim" -> headDim = Integer.parseInt(v);
                    case "--family" -> family = v;
                    case "--experts" -> experts = Integer.parseInt(v);
                    case "--experts-per-token" -> perToken = Integer.parseInt(v);
                    case "--moe-intermediate" -> moeInter = Integer.parseInt(v);
                    case "--vocab" -> vocab = Integer.parseInt(v);
                    case "--max-positions" -> maxPos = Integer.parseInt(v);
                    case "--dtype" -> dtype = v;
                    case "--seed" -> seed = Long.parseLong(v);
                    case "--shard-mib" -> shard = Long.parseLong(v) << 20;
                    case "--tokenizer" -> tok = Path.of(v);
                    default -> throw new IllegalArgumentException("unknown option " + x);
                }
            }
            if (out == null) {
                throw new IllegalArgumentException("name the output folder");
            }
            return new Args(out, new Options(shape(preset, new Dims(family, hidden, inter, layers, heads, kvHeads, headDim,
                    vocab, maxPos, experts, perToken, moeInter)),
                    dtype(dtype), seed, shard, tok, preset), overwrite);
        }
    }

    /** A preset's shape with explicit dimensions overriding it, no family, head dim or experts given (see {@link #shape(String, Dims)}). */
    public static Shape shape(String preset, Integer hidden, Integer inter, Integer layers, Integer heads, Integer kvHeads,
                              Integer vocab, Integer maxPositions) {
        return shape(preset, new Dims(null, hidden, inter, layers, heads, kvHeads, null, vocab, maxPositions, null, null,
                null));
    }

    /** The dimensions given on a command line, each null when not given; {@code family} as {@code --family} names it. */
    public record Dims(String family, Integer hidden, Integer intermediate, Integer layers, Integer heads, Integer kvHeads,
                       Integer headDim, Integer vocab, Integer maxPositions, Integer experts, Integer expertsPerToken,
                       Integer expertIntermediate) {
    }

    /**
     * A preset's shape with explicit dimensions overriding it ({@code --layers 4} cuts a preset to four
     * blocks); without a preset the family is {@code d.family()} (default llama) and hidden,
     * intermediate, layers, heads and vocab are needed, plus the experts, experts per token and their
     * width for a mixture of experts. kv heads default to the heads, the head dim to hidden / heads
     * (a Qwen3 preset's stays its own when hidden or heads change), max positions to 2048.
     */
    public static Shape shape(String preset, Dims d) {
        Shape p = preset == null ? null : preset(preset);
        Family f = p != null ? p.family() : d.family() != null ? Family.parse(d.family()) : Family.LLAMA;
        if (p != null && d.family() != null && Family.parse(d.family()) != f) {
            throw new IllegalArgumentException("--preset " + preset + " is a " + f.option() + " model, not --family "
                    + d.family());
        }
        if (p == null && (d.hidden() == null || d.intermediate() == null || d.layers() == null || d.heads() == null
                || d.vocab() == null)) {
            throw new IllegalArgumentException("give --preset (" + String.join(", ", PRESETS) + "), or --hidden,"
                    + " --intermediate, --layers, --heads and --vocab (--kv-heads defaults to --heads)");
        }
        if (p == null && f.moe() && (d.experts() == null || d.expertsPerToken() == null || d.expertIntermediate() == null)) {
            throw new IllegalArgumentException("--family " + f.option() + " needs --experts, --experts-per-token and"
                    + " --moe-intermediate (or --preset qwen3-30b-a3b)");
        }
        int h = d.hidden() != null ? d.hidden() : p.hidden();
        int hd = d.heads() != null ? d.heads() : p.heads();
        int headDim = d.headDim() != null ? d.headDim()
                : p != null && (f != Family.LLAMA || d.hidden() == null && d.heads() == null) ? p.headDim()
                : evenSplit(h, hd);
        return new Shape(f, h, d.intermediate() != null ? d.intermediate() : p.intermediate(),
                d.layers() != null ? d.layers() : p.layers(), hd,
                d.kvHeads() != null ? d.kvHeads() : p != null && d.heads() == null ? p.kvHeads() : hd, headDim,
                d.vocab() != null ? d.vocab() : p.vocab(),
                d.maxPositions() != null ? d.maxPositions() : p != null ? p.maxPositions() : 2048,
                d.experts() != null ? d.experts() : p != null ? p.experts() : 0,
                d.expertsPerToken() != null ? d.expertsPerToken() : p != null ? p.expertsPerToken() : 0,
                d.expertIntermediate() != null ? d.expertIntermediate() : p != null ? p.expertIntermediate() : 0);
    }

    /** "bf16" / "bfloat16" or "fp16" / "float16". */
    public static DType dtype(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "bf16", "bfloat16" -> DType.BF16;
            case "fp16", "f16", "float16" -> DType.F16;
            default -> throw new IllegalArgumentException("--dtype must be bf16 or fp16, got '" + s + "'");
        };
    }
}
