package dev.shrink.core.synth;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
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
 * Writes a Hugging Face LLaMA folder with random weights of given shapes (what {@code shrink synth}
 * does): {@code config.json}, {@code generation_config.json}, the weights as bf16 or fp16
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

    /** A LLaMA model's shapes. */
    public record Shape(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, int maxPositions) {
        public Shape {
            if (hidden <= 0 || intermediate <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0
                    || maxPositions <= 0) {
                throw new IllegalArgumentException("every dimension must be positive: hidden " + hidden + ", intermediate "
                        + intermediate + ", layers " + layers + ", heads " + heads + ", kv heads " + kvHeads + ", vocab "
                        + vocab + ", max positions " + maxPositions);
            }
            if (hidden % heads != 0) {
                throw new IllegalArgumentException("hidden " + hidden + " is not a multiple of the " + heads + " heads");
            }
            if (heads % kvHeads != 0) {
                throw new IllegalArgumentException(heads + " heads are not a multiple of the " + kvHeads + " kv heads");
            }
            if ((hidden / heads) % 2 != 0) {
                throw new IllegalArgumentException("the head dim " + hidden / heads + " must be even (RoPE)");
            }
        }

        public int headDim() {
            return hidden / heads;
        }

        /** Parameters of the model (untied embeddings and head). */
        public long parameters() {
            long C = hidden, F = intermediate, D = headDim();
            long perLayer = 2 * C + C * heads * D + 2 * C * kvHeads * D + heads * D * C + 3 * C * F;
            return layers * perLayer + 2L * vocab * C + C;
        }
    }

    /** The named shapes: {@code llama2-7b}, {@code llama2-13b}. */
    public static Shape preset(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "llama2-7b" -> new Shape(4096, 11008, 32, 32, 32, 32000, 4096);
            case "llama2-13b" -> new Shape(5120, 13824, 40, 40, 40, 32000, 4096);
            default -> throw new IllegalArgumentException("unknown preset '" + name + "' (llama2-7b, llama2-13b)");
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

    /** The tensors of the folder in the order transformers saves them (embeddings, blocks, norm, head). */
    static List<Spec> tensors(Shape s) {
        long C = s.hidden(), F = s.intermediate(), q = (long) s.heads() * s.headDim(), kv = (long) s.kvHeads() * s.headDim();
        List<Spec> t = new ArrayList<>();
        t.add(new Spec("model.embed_tokens.weight", new long[] {s.vocab(), C}, false));
        for (int l = 0; l < s.layers(); l++) {
            String p = "model.layers." + l + ".";
            t.add(new Spec(p + "input_layernorm.weight", new long[] {C}, true));
            t.add(new Spec(p + "self_attn.q_proj.weight", new long[] {q, C}, false));
            t.add(new Spec(p + "self_attn.k_proj.weight", new long[] {kv, C}, false));
            t.add(new Spec(p + "self_attn.v_proj.weight", new long[] {kv, C}, false));
            t.add(new Spec(p + "self_attn.o_proj.weight", new long[] {C, q}, false));
            t.add(new Spec(p + "post_attention_layernorm.weight", new long[] {C}, true));
            t.add(new Spec(p + "mlp.gate_proj.weight", new long[] {F, C}, false));
            t.add(new Spec(p + "mlp.up_proj.weight", new long[] {F, C}, false));
            t.add(new Spec(p + "mlp.down_proj.weight", new long[] {C, F}, false));
        }
        t.add(new Spec("model.norm.weight", new long[] {C}, true));
        t.add(new Spec("lm_head.weight", new long[] {s.vocab(), C}, false));
        return t;
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
        List<Spec> specs = tensors(s);
        long total = 0;
        for (Spec t : specs) {
            total += t.numel() * o.dtype().byteSize();
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
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), config(o));
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
        return new Summary(target, n, total, s.parameters(), (System.nanoTime() - t0) / 1e9);
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

    static ObjectNode config(Options o) {
        Shape s = o.shape();
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", s.hidden());
        c.put("intermediate_size", s.intermediate());
        c.put("num_hidden_layers", s.layers());
        c.put("num_attention_heads", s.heads());
        c.put("num_key_value_heads", s.kvHeads());
        c.put("head_dim", s.headDim());
        c.put("vocab_size", s.vocab());
        c.put("max_position_embeddings", s.maxPositions());
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", 10000.0);
        c.put("hidden_act", "silu");
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
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
     * {@code SyntheticModel OUT [--preset llama2-7b | --hidden C ...] [--dtype bf16|fp16] [--seed S] [--overwrite]}.
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
            String preset = null, dtype = "bf16";
            Integer hidden = null, inter = null, layers = null, heads = null, kvHeads = null, vocab = null, maxPos = null;
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
            return new Args(out, new Options(shape(preset, hidden, inter, layers, heads, kvHeads, vocab, maxPos),
                    dtype(dtype), seed, shard, tok, preset), overwrite);
        }
    }

    /** A preset's shape with explicit dimensions overriding it; without a preset every dimension but kv heads is needed. */
    public static Shape shape(String preset, Integer hidden, Integer inter, Integer layers, Integer heads, Integer kvHeads,
                              Integer vocab, Integer maxPositions) {
        Shape p = preset == null ? null : preset(preset);
        if (p == null && (hidden == null || inter == null || layers == null || heads == null || vocab == null)) {
            throw new IllegalArgumentException("give --preset llama2-7b, or --hidden, --intermediate, --layers, --heads and"
                    + " --vocab (--kv-heads defaults to --heads)");
        }
        int h = hidden != null ? hidden : p.hidden();
        int hd = heads != null ? heads : p.heads();
        return new Shape(h, inter != null ? inter : p.intermediate(), layers != null ? layers : p.layers(), hd,
                kvHeads != null ? kvHeads : p != null && heads == null ? p.kvHeads() : hd,
                vocab != null ? vocab : p.vocab(), maxPositions != null ? maxPositions : p != null ? p.maxPositions() : 2048);
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
