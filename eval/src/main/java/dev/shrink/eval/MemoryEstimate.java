package dev.shrink.eval;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import java.nio.file.Files;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * How much GPU memory serving a decoder-only model takes, and how fast decoding can be at best: the
 * seeds' arithmetic (ALGORITHMS.md, "Memory estimate"), as a pure function of the model's dimensions,
 * its weight bytes, the workload and a GPU.
 *
 * <p>Letters: L layers, C hidden, H heads, Hkv KV heads, D head dim, F intermediate, V vocab; B batch,
 * T prompt tokens, n new tokens.
 * <ul>
 *   <li>weights: the bytes of the folder's tensors as its safetensors headers give them (so GPTQ, AWQ
 *       and compressed sparse folders count at their real size), or, from dims, the LLaMA-family
 *       parameter count (per layer: q C·H·D, k and v C·Hkv·D each, o H·D·C, gate, up and down C·F
 *       each, 2 norms C; plus the embedding V·C, lm_head V·C unless tied, the final norm C) at a dtype,
 *       decoder linears optionally at b bits with a fp16 scale and a b-bit zero point per group;</li>
 *   <li>KV cache: 2 (K and V) · L · Hkv · D · bytes per token, times B · (T + n) tokens;</li>
 *   <li>activations: the peak of one decoder layer's prefill working set for the B · T prompt tokens
 *       at 2 bytes (fp16/bf16): attention x, norm(x), q, k, v, the attention output and the o
 *       projection output, B·T·(3C + 2·H·D + 2·Hkv·D), plus with eager attention the score matrix
 *       B·H·T²; or the MLP x, norm(x), gate, up, silu(gate)·up, down output, B·T·(3C + 3F); whichever is
 *       larger, plus the fp32 logits of the last position B·V·4 (what generate and vLLM compute);</li>
 *   <li>decode floor: every decode step reads every weight once (except an untied input embedding
 *       table, of which only B rows are gathered) and the whole KV cache, so
 *       seconds per step ≥ (weight bytes + KV bytes) / memory bandwidth, with the KV cache at its
 *       final length (the last, slowest step); tokens/s for the batch ≤ B / that.</li>
 * </ul>
 *
 * @param dims        the model's dimensions
 * @param workload    batch and token counts
 * @param weights     weight bytes and how they were found, or null when they could not be sized
 * @param kvCache     the KV cache
 * @param activations the activation peak
 * @param totalBytes  weights + KV cache + activations, or null without the weights
 * @param gpu         the GPU compared against, or null
 * @param fits        whether the total fits the GPU's memory, or null without a GPU or the weights
 * @param decode      the decode floor, or null without a GPU or the weights
 * @param compute     FLOPs, prefill and decode latency and throughput, or null without a GPU or the weights
 * @param maxBatch    for each KV cache type, the largest batch that fits the GPU; empty without a GPU or the weights
 */
public record MemoryEstimate(Dims dims, Workload workload, Weights weights, KvCache kvCache, Activations activations,
                             Long totalBytes, Gpu gpu, Boolean fits, Decode decode, Compute compute,
                             List<BatchFit> maxBatch) {

    /**
     * Element types of the KV cache: the float types, and int8 / int4 with an fp16 scale and an fp16
     * zero point per token and KV head (LMDeploy's online scheme, docs/KV_CACHE.md).
     */
    public enum KvDtype {
        FP32(32), FP16(16), BF16(16), FP8(8), INT8(8), INT4(4);

        private final int bits;

        KvDtype(int bits) {
            this.bits = bits;
        }

        public int bits() {
            return bits;
        }

        /** int8 and int4: codes with a scale and zero point per token and head. */
        public boolean quantized() {
            return this == INT8 || this == INT4;
        }

        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }

        /** The float types as {@link ElementType#parse} reads them, and int8, int4. */
        public static KvDtype parse(String s, String option) {
            String k = s.toLowerCase(Locale.ROOT).strip();
            if (k.equals("int4") || k.equals("i4")) {
                return INT4;
            }
            try {
                return KvDtype.valueOf(ElementType.parse(s, option).name());
            } catch (ShrinkException e) {
                throw new ShrinkException(option + ": unknown type '" + s + "' (fp32, fp16, bf16, fp8, int8, int4)");
            }
        }
    }

    /** Head dimension taken for the scale groups of an int8 / int4 cache when the heads are not given. */
    public static final int ASSUMED_HEAD_DIM = 128;

    /** Bytes per activation element in the forward pass (fp16/bf16 compute). */
    public static final int ACTIVATION_BYTES = 2;


    /** Element types for weights and the KV cache. */
    public enum ElementType {
        FP32(4), FP16(2), BF16(2), FP8(1), INT8(1);

        private final int bytes;

        ElementType(int bytes) {
            this.bytes = bytes;
        }

        public int bytes() {
            return bytes;
        }

        /** "fp16", as options take it. */
        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }

        /** fp32|fp16|bf16|fp8|int8, also the torch names float32, float16, bfloat16. */
        public static ElementType parse(String s, String option) {
            String k = s.toLowerCase(Locale.ROOT).strip().replace("torch.", "");
            return switch (k) {
                case "fp32", "float32", "f32", "float" -> FP32;
                case "fp16", "float16", "f16", "half" -> FP16;
                case "bf16", "bfloat16" -> BF16;
                case "fp8", "float8", "f8", "fp8_e4m3", "float8_e4m3fn" -> FP8;
                case "int8", "i8" -> INT8;
                default -> throw new ShrinkException(option + ": unknown type '" + s + "' (fp32, fp16, bf16, fp8, int8)");
            };
        }
    }

    /**
     * A decoder's dimensions. Unknown optional ones are null: without heads the attention is taken as
     * multi-head (the K and V width is the hidden size).
     *
     * @param layers         L
     * @param hidden         C
     * @param heads          H, or null
     * @param kvHeads        Hkv (= H without GQA), or null
     * @param headDim        D (C / H when the config has none), or null
     * @param intermediate   F, or null
     * @param vocab          V, or null
     * @param tiedEmbeddings the output head is the embedding table
     * @param source         where they come from (a file, or "options")
     */
    public record Dims(int layers, int hidden, Integer heads, Integer kvHeads, Integer headDim, Integer intermediate,
                       Integer vocab, boolean tiedEmbeddings, String source) {

        public Dims {
            if (layers <= 0 || hidden <= 0) {
                throw new IllegalArgumentException("layers and hidden must be positive: " + layers + ", " + hidden);
            }
            if (kvHeads != null && heads == null) {
                throw new IllegalArgumentException("kvHeads without heads");
            }
        }

        /** Hkv · D: the width of K (and of V); C for multi-head attention when the heads are not known. */
        public long kvWidth() {
            return heads == null ? hidden : (long) kvHeadCount() * effectiveHeadDim();
        }

        /** Hkv (H when not given), or null without heads. */
        public Integer kvHeadCount() {
            return heads == null ? null : kvHeads == null ? heads : kvHeads;
        }

        /** H · D: the width of Q and of the attention output. */
        public long qWidth() {
            return heads == null ? hidden : (long) heads * effectiveHeadDim();
        }

        /** D (C / H when not given), or null without heads. */
        public Integer effectiveHeadDim() {
            return heads == null ? null : headDim != null ? headDim : hidden / heads;
        }

        /** From a parsed LLaMA-family config. */
        public static Dims of(ModelConfig c, String source) {
            return new Dims(c.layers(), c.hidden(), c.heads(), c.kvHeads(), c.headDim(), c.intermediate(), c.vocab(),
                    c.tiedEmbeddings(), source);
        }

        /**
         * From any decoder's config.json: num_hidden_layers (n_layer), hidden_size (n_embd, d_model),
         * num_attention_heads (n_head), num_key_value_heads, head_dim, intermediate_size (n_inner, ffn_dim),
         * vocab_size, tie_word_embeddings (absent: untied).
         *
         * @throws ShrinkException naming the file for unreadable JSON or missing layers / hidden size
         */
        public static Dims fromConfigJson(Path file) {
            JsonNode root = readJson(file);
            Integer layers = intKey(root, file, "num_hidden_layers", "n_layer", "num_layers");
            Integer hidden = intKey(root, file, "hidden_size", "n_embd", "d_model");
            if (layers == null || hidden == null) {
                throw ShrinkException.at(file, "has no " + (layers == null ? "num_hidden_layers" : "hidden_size")
                        + ": the estimate needs the number of layers and the hidden size");
            }
            Integer heads = intKey(root, file, "num_attention_heads", "n_head");
            Integer kvHeads = intKey(root, file, "num_key_value_heads");
            Integer headDim = intKey(root, file, "head_dim");
            if (heads == null && (kvHeads != null || headDim != null)) {
                throw ShrinkException.at(file, "has num_key_value_heads or head_dim but no num_attention_heads");
            }
            if (heads != null && headDim == null && hidden % heads != 0) {
                throw ShrinkException.at(file, "hidden_size " + hidden + " is not divisible by num_attention_heads " + heads
                        + " and head_dim is missing");
            }
            if (heads != null && kvHeads != null && heads % kvHeads != 0) {
                throw ShrinkException.at(file, "num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
            }
            return new Dims(layers, hidden, heads, kvHeads == null ? heads : kvHeads,
                    heads == null ? null : headDim == null ? hidden / heads : headDim,
                    intKey(root, file, "intermediate_size", "n_inner", "ffn_dim"), intKey(root, file, "vocab_size"),
                    root.path("tie_word_embeddings").asBoolean(false), file.toString());
        }

        /** The config's torch_dtype (or dtype), or null. */
        public static String dtypeOf(Path file) {
            JsonNode root = readJson(file);
            JsonNode d = root.hasNonNull("torch_dtype") ? root.get("torch_dtype") : root.get("dtype");
            return d == null || d.isNull() ? null : d.asText();
        }
    }

    /**
     * The workload.
     *
     * @param batch        B sequences decoded together
     * @param promptTokens T tokens of each prompt (prefilled)
     * @param newTokens    n tokens generated per sequence
     */
    public record Workload(int batch, int promptTokens, int newTokens) {
        public Workload {
            if (batch <= 0 || promptTokens < 0 || newTokens < 0 || promptTokens + newTokens <= 0) {
                throw new IllegalArgumentException("batch must be positive and there must be tokens: "
                        + batch + ", " + promptTokens + ", " + newTokens);
            }
        }

        /** B · (T + n): the tokens the KV cache holds at the end. */
        public long cachedTokens() {
            return (long) batch * (promptTokens + (long) newTokens);
        }
    }

    /**
     * Weight bytes.
     *
     * @param bytes          all weight bytes
     * @param embeddingBytes an untied input embedding table's bytes (gathered, not streamed, when decoding); 0 when tied
     * @param how            how they were found
     * @param params         the parameter count when given as one (--params), else null
     */
    public record Weights(long bytes, long embeddingBytes, String how, Long params) {
        public Weights(long bytes, long embeddingBytes, String how) {
            this(bytes, embeddingBytes, how, null);
        }
    }

    /**
     * The KV cache.
     *
     * @param dtype         the element type
     * @param bytesPerToken 2 · L · Hkv · D · bytes, plus for int8 / int4 2 · L · Hkv · 4 B of fp16 scale and zero
     * @param scaleBytesPerToken the scale and zero point part of bytesPerToken (0 for the float types)
     * @param tokens        B · (T + n)
     * @param bytes         bytesPerToken · tokens
     * @param formula       the formula with the numbers
     */
    public record KvCache(String dtype, long bytesPerToken, long scaleBytesPerToken, long tokens, long bytes, String formula) {
    }

    /**
     * The activation peak of one layer's prefill.
     *
     * @param attentionBytes the attention sub-block's working set
     * @param mlpBytes       the MLP's
     * @param logitsBytes    the last position's fp32 logits
     * @param peakBytes      max(attention, MLP) + logits
     * @param formula        what was counted, with the numbers
     * @param assumptions    dimensions that were not known and what was taken instead
     */
    public record Activations(long attentionBytes, long mlpBytes, long logitsBytes, long peakBytes, String formula,
                              List<String> assumptions) {
    }

    /**
     * The decode floor.
     *
     * @param weightBytesRead            weights read per step
     * @param kvBytesRead                KV cache read per step (at the final length)
     * @param secondsPerStep             lower bound of one decode step
     * @param tokensPerSecond            upper bound for the batch: B / secondsPerStep
     * @param tokensPerSecondPerSequence upper bound for one sequence of the batch
     * @param formula                    the formula with the numbers
     */
    public record Decode(long weightBytesRead, long kvBytesRead, double secondsPerStep, double tokensPerSecond,
                         double tokensPerSecondPerSequence, String formula) {
    }

    /** 2 · L · Hkv · D · bytes: the KV cache bytes of one token. */
    public static long kvBytesPerToken(int layers, long kvWidth, int bytes) {
        return 2L * layers * kvWidth * bytes;
    }

    /**
     * The weights of a model folder: the sum of its tensors' byte lengths from the safetensors headers.
     * The input embedding table counts as gathered when there is a separate lm_head.weight.
     */
    public static Weights folderWeights(WeightStore store) {
        long embed = 0;
        boolean untied = store.has("lm_head.weight");
        int count = 0;
        for (String n : store.names()) {
            TensorInfo t = store.info(n);
            count++;
            if (untied && (n.endsWith("embed_tokens.weight") || n.endsWith("wte.weight") || n.endsWith("word_embeddings.weight"))) {
                embed += t.byteLength();
            }
        }
        return new Weights(store.totalBytes(), embed, "sum of the " + count + " tensors' bytes in the safetensors headers of "
                + store.dir());
    }

    /**
     * Weights computed from the dimensions: every parameter at {@code dtype}, or the decoder linears at
     * {@code wBits} bits with a fp16 scale and a {@code wBits}-bit zero point per group of
     * {@code groupSize} inputs (-1: one group per row).
     *
     * @throws ShrinkException when the intermediate size or the vocabulary is unknown
     */
    public static Weights computedWeights(Dims d, ElementType dtype, Integer wBits, int groupSize) {
        if (d.intermediate() == null || d.vocab() == null) {
            throw new ShrinkException("the weights of " + d.source() + " cannot be sized without "
                    + (d.intermediate() == null ? "the intermediate size" : "the vocabulary size")
                    + "; give --params N, or --intermediate and --vocab");
        }
        long C = d.hidden(), F = d.intermediate(), V = d.vocab(), q = d.qWidth(), kv = d.kvWidth();
        // [N, K] of the block's linears: q, k, v, o, gate, up, down
        long[][] linears = {{q, C}, {kv, C}, {kv, C}, {C, q}, {F, C}, {F, C}, {C, F}};
        long linearParams = 0;
        long linearBytes = 0;
        for (long[] nk : linears) {
            linearParams += nk[0] * nk[1];
            linearBytes += wBits == null ? nk[0] * nk[1] * dtype.bytes() : quantizedBytes(nk[0], nk[1], wBits, groupSize);
        }
        long embedParams = V * C;
        long otherParams = embedParams + (d.tiedEmbeddings() ? 0 : V * C) + 2L * d.layers() * C + C;
        long params = d.layers() * linearParams + otherParams;
        long bytes = d.layers() * linearBytes + otherParams * dtype.bytes();
        String how = String.format(Locale.ROOT, "%,d parameters (LLaMA-family count from %s)", params, d.source())
                + (wBits == null ? " at " + dtype.id()
                : String.format(Locale.ROOT, ": decoder linears at %d bits + fp16 scale and %d-bit zero per %s, the rest at %s",
                wBits, wBits, groupSize < 0 ? "row" : "group of " + groupSize, dtype.id()));
        return new Weights(bytes, d.tiedEmbeddings() ? 0 : embedParams * dtype.bytes(), how);
    }

    /** Whether {@link #computedWeights} can size these dims' weights: the intermediate size and the vocabulary are known. */
    public static boolean canComputeWeights(Dims d) {
        return d.intermediate() != null && d.vocab() != null;
    }

    /** Weights given as a parameter count at one dtype. */
    public static Weights paramWeights(long params, ElementType dtype, Dims d) {
        long embed = !d.tiedEmbeddings() && d.vocab() != null ? (long) d.vocab() * d.hidden() * dtype.bytes() : 0;
        return new Weights(params * dtype.bytes(), embed,
                String.format(Locale.ROOT, "%,d parameters (--params) at %s", params, dtype.id()), params);
    }

    /** b-bit codes of an [N, K] linear, plus per group of inputs a fp16 scale and a b-bit zero point per output. */
    static long quantizedBytes(long N, long K, int bits, int groupSize) {
        long groups = groupSize < 0 ? 1 : (K + groupSize - 1) / groupSize;
        long codes = (N * K * bits + 7) / 8;
        long zeros = (N * groups * bits + 7) / 8;
        return codes + zeros + N * groups * 2;
    }

    /**
     * The estimate.
     *
     * @param w              the weights, or null when unknown (then no total, fit or decode floor)
     * @param gpu            the GPU to compare against, or null
     * @param eagerAttention count the B·H·T² attention scores (eager attention); fused attention
     *                       (SDPA / FlashAttention, vLLM) never holds them
     * @throws ShrinkException when eager attention is asked for without the head count
     */
    public static MemoryEstimate estimate(Dims d, Weights w, Workload wl, ElementType kvType, boolean eagerAttention, Gpu gpu) {
        return estimate(d, w, wl, KvDtype.valueOf(kvType.name()), eagerAttention, gpu);
    }

    /** {@link #estimate(Dims, Weights, Workload, ElementType, boolean, Gpu)} for any KV cache type, int8 and int4 included. */
    public static MemoryEstimate estimate(Dims d, Weights w, Workload wl, KvDtype kvType, boolean eagerAttention, Gpu gpu) {
        List<String> assumptions = new ArrayList<>();
        KvCache kv = kvCache(d, wl, kvType, assumptions);
        Activations act = activations(d, wl.batch(), wl.promptTokens(), eagerAttention, assumptions);

        Long total = w == null ? null : w.bytes() + kv.bytes() + act.peakBytes();
        Boolean fits = null;
        Decode decode = null;
        Compute compute = null;
        List<BatchFit> batches = new ArrayList<>();
        if (gpu != null && w != null) {
            fits = total <= gpu.memoryBytes();
            long weightRead = w.bytes() - w.embeddingBytes();
            double seconds = (weightRead + kv.bytes()) / gpu.bandwidth();
            decode = new Decode(weightRead, kv.bytes(), seconds, wl.batch() / seconds, 1 / seconds,
                    String.format(Locale.ROOT, "(weights %,d B + KV cache %,d B at %d tokens per sequence) / %.0f GB/s",
                            weightRead, kv.bytes(), wl.promptTokens() + wl.newTokens(), gpu.bandwidth() / 1e9));
            compute = compute(d, w, wl, kv, gpu, assumptions);
            Activations one = activations(d, 1, wl.promptTokens(), eagerAttention, new ArrayList<>());
            long free = gpu.memoryBytes() - w.bytes();
            for (KvDtype t : KvDtype.values()) {
                KvCache k1 = kvCache(d, new Workload(1, wl.promptTokens(), wl.newTokens()), t, new ArrayList<>());
                long perSequence = k1.bytes() + one.peakBytes();
                batches.add(new BatchFit(t.id(), k1.bytesPerToken(), perSequence, free <= 0 ? 0 : free / perSequence));
            }
        }
        act = new Activations(act.attentionBytes(), act.mlpBytes(), act.logitsBytes(), act.peakBytes(), act.formula(),
                List.copyOf(assumptions));
        return new MemoryEstimate(d, wl, w, kv, act, total, gpu, fits, decode, compute, List.copyOf(batches));
    }

    /** The KV cache of the workload: codes (or floats) plus, for int8 / int4, the fp16 scale and zero per token and head. */
    static KvCache kvCache(Dims d, Workload wl, KvDtype t, List<String> assumptions) {
        long kvWidth = d.kvWidth();
        String width = d.heads() == null ? "hidden " + d.hidden() + " (multi-head: kv_heads × head_dim = hidden)"
                : "kv_heads " + d.kvHeadCount() + " × head_dim " + d.effectiveHeadDim();
        long codes = (kvWidth * t.bits() + 7) / 8;
        long scaleBytes = 0;
        String perLayer;
        if (t.quantized()) {
            long groups;
            if (d.heads() != null) {
                groups = d.kvHeadCount();
            } else {
                groups = (kvWidth + ASSUMED_HEAD_DIM - 1) / ASSUMED_HEAD_DIM;
                assumptions.add("heads not given: the " + t.id() + " cache's scales are counted per head of "
                        + ASSUMED_HEAD_DIM + " (" + groups + " heads)");
            }
            scaleBytes = 2L * d.layers() * groups * dev.shrink.core.forward.KvCacheType.SCALE_ZERO_BYTES;
            perLayer = String.format(Locale.ROOT, "(%s × %d bits + %d heads × %d B fp16 scale and zero)", width, t.bits(), groups,
                    dev.shrink.core.forward.KvCacheType.SCALE_ZERO_BYTES);
        } else {
            perLayer = String.format(Locale.ROOT, "%s × %d B", width, t.bits() / 8);
        }
        long perToken = 2L * d.layers() * codes + scaleBytes;
        long tokens = wl.cachedTokens();
        return new KvCache(t.id(), perToken, scaleBytes, tokens, perToken * tokens, String.format(Locale.ROOT,
                "2 × layers %d × %s = %,d B/token%s; × batch %d × (%d + %d) tokens", d.layers(), perLayer, perToken,
                scaleBytes == 0 ? "" : String.format(Locale.ROOT, " (%,d B of it scales and zeros)", scaleBytes),
                wl.batch(), wl.promptTokens(), wl.newTokens()));
    }

    private static Activations activations(Dims d, long B, long T, boolean eagerAttention, List<String> assumptions) {
        long C = d.hidden(), a = ACTIVATION_BYTES;
        long F = d.intermediate() != null ? d.intermediate() : 4 * C;
        if (d.intermediate() == null) {
            assumptions.add("intermediate size unknown: the MLP is taken as 4 × hidden = " + F);
        }
        long attention = B * T * (3 * C + 2 * d.qWidth() + 2 * d.kvWidth()) * a;
        if (eagerAttention) {
            if (d.heads() == null) {
                throw new ShrinkException("--eager-attention needs the number of heads (--heads)");
            }
            attention += B * d.heads() * T * T * a;
        }
        long mlp = B * T * (3 * C + 3 * F) * a;
        long logits = d.vocab() != null ? B * d.vocab() * 4L : 0;
        if (d.vocab() == null) {
            assumptions.add("vocabulary unknown: the logits are not counted");
        }
        long peak = Math.max(attention, mlp) + logits;
        String formula = String.format(Locale.ROOT,
                "one layer's prefill of batch %d × %d tokens at %d B: max(attention B·T·(3C + 2·H·D + 2·Hkv·D)%s = %,d, "
                        + "MLP B·T·(3C + 3F) = %,d) + last-position fp32 logits B·V·4 = %,d",
                B, T, a, eagerAttention ? " + scores B·H·T²" : "", attention, mlp, logits);
        return new Activations(attention, mlp, logits, peak, formula, List.copyOf(assumptions));
    }

    /**
     * FLOPs, latency and throughput (README.md, "Memory estimate"; {@code estimate --help}), or null when the linears'
     * FLOPs are unknown (no intermediate size or vocabulary, and no --params). Per token: 2 FLOPs per
     * weight of the decoder linears and the head, plus attention's q·kᵀ and p·v, 4·H·D per layer and
     * position attended to. Prefill is compute-bound: its FLOPs (the head on the last position only)
     * over the GPU's dense tensor FLOP/s, or the weight read if that takes longer. A decode step is
     * memory-bound: the weights plus the KV cache at the steps' mean length T + (n + 1)/2, over the
     * bandwidth, or its FLOPs if they take longer.
     */
    static Compute compute(Dims d, Weights w, Workload wl, KvCache kv, Gpu gpu, List<String> assumptions) {
        long B = wl.batch(), T = wl.promptTokens(), n = wl.newTokens(), L = d.layers(), qW = d.qWidth();
        double linear; // FLOPs per token of the decoder linears and the head
        double head;
        String linearHow;
        if (canComputeWeights(d)) {
            long C = d.hidden(), F = d.intermediate(), kvW = d.kvWidth();
            long perLayer = qW * C + 2 * kvW * C + C * qW + 3 * F * C;
            head = 2.0 * d.vocab() * C;
            linear = 2.0 * L * perLayer + head;
            linearHow = String.format(Locale.ROOT, "2 × (layers %d × %,d linear weights + head %,d)", L, perLayer,
                    (long) d.vocab() * C);
        } else if (w.params() != null) {
            head = 0;
            linear = 2.0 * w.params();
            linearHow = String.format(Locale.ROOT, "2 × %,d parameters", w.params());
            assumptions.add("FLOPs taken as 2 × --params per token (the layer shapes are not known)");
        } else {
            assumptions.add("FLOPs and latency unknown: give --intermediate and --vocab, or --params");
            return null;
        }
        double attnPrefill = 2.0 * L * qW * T * (T + 1); // Σ_{p=1..T} 4·L·H·D·p
        double meanContext = T + (n + 1) / 2.0;
        double decodeFlops = linear + 4.0 * L * qW * meanContext;
        double prefillFlops = B * (T * (linear - head) + (T > 0 ? head : 0) + attnPrefill);
        long weightRead = w.bytes() - w.embeddingBytes();
        double prefillCompute = prefillFlops / gpu.tensorFlops(), prefillMemory = T == 0 ? 0 : weightRead / gpu.bandwidth();
        double prefill = Math.max(prefillCompute, prefillMemory);
        double kvRead = (double) kv.bytesPerToken() * B * meanContext;
        double stepMemory = (weightRead + kvRead) / gpu.bandwidth(), stepCompute = B * decodeFlops / gpu.tensorFlops();
        double step = Math.max(stepMemory, stepCompute);
        double total = prefill + n * step;
        String formula = String.format(Locale.ROOT, "FLOPs per token %s = %.4g, + attention 4 × layers × H·D %d × positions "
                        + "attended; prefill %.4g FLOPs / %.1f TFLOP/s%s; decode step (weights %,d B + KV %,.0f B at mean "
                        + "context %.1f) / %.0f GB/s%s",
                linearHow, linear, qW, prefillFlops, gpu.tensorFlops() / 1e12,
                prefillCompute >= prefillMemory ? "" : " (memory-bound: reading the weights takes longer)",
                weightRead, kvRead, meanContext, gpu.bandwidth() / 1e9,
                stepMemory >= stepCompute ? "" : " (compute-bound at this batch)");
        return new Compute(prefillFlops, T == 0 ? 0 : prefillFlops / (B * T), decodeFlops,
                prefill, prefillCompute >= prefillMemory ? "compute" : "memory", T == 0 ? 0 : B * T / prefill,
                step, stepMemory >= stepCompute ? "memory" : "compute", B / step, 1 / step,
                total, n == 0 ? 0 : B * n / total, formula);
    }

    /**
     * FLOPs, latency and throughput on the GPU.
     *
     * @param prefillFlops                the prompt's forward for the whole batch (the head on the last position)
     * @param prefillFlopsPerToken        prefillFlops / (B · T)
     * @param decodeFlopsPerToken         one generated token at the steps' mean context T + (n + 1)/2
     * @param prefillSeconds              prefill latency: max(FLOPs / tensor FLOP/s, weight bytes / bandwidth)
     * @param prefillBound                "compute" or "memory": which of the two it is
     * @param prefillTokensPerSecond      B · T / prefillSeconds (at batch 1: compare with eval --speed's prefill tok/s)
     * @param decodeSecondsPerStep        one decode step: max((weights + KV at mean context) / bandwidth, B · FLOPs / tensor FLOP/s)
     * @param decodeBound                 "memory" or "compute"
     * @param decodeTokensPerSecond       B / decodeSecondsPerStep
     * @param decodeTokensPerSecondPerSequence 1 / decodeSecondsPerStep (at batch 1: compare with eval --speed's decode tok/s)
     * @param totalSeconds                prefill + n decode steps
     * @param throughput                  generated tokens per second for the batch, prefill included: B · n / totalSeconds
     * @param formula                     the formulas with the numbers
     */
    public record Compute(double prefillFlops, double prefillFlopsPerToken, double decodeFlopsPerToken,
                          double prefillSeconds, String prefillBound, double prefillTokensPerSecond,
                          double decodeSecondsPerStep, String decodeBound, double decodeTokensPerSecond,
                          double decodeTokensPerSecondPerSequence, double totalSeconds, double throughput, String formula) {
    }

    /**
     * The largest batch whose weights, KV cache ((T + n) tokens per sequence) and activations fit the
     * GPU's memory with this KV cache type.
     *
     * @param kvDtype          the KV cache type
     * @param kvBytesPerToken  its bytes per token, scales included
     * @param bytesPerSequence KV cache plus activations of one sequence
     * @param maxBatch         floor((GPU memory − weights) / bytesPerSequence); 0 when the weights alone do not fit
     */
    public record BatchFit(String kvDtype, long kvBytesPerToken, long bytesPerSequence, long maxBatch) {
    }

    private static JsonNode readJson(Path file) {
        return StrictJson.readObject(file, "not found");
    }

    private static Integer intKey(JsonNode root, Path file, String... keys) {
        for (String k : keys) {
            JsonNode n = root.get(k);
            if (n != null && !n.isNull()) {
                if (!n.isIntegralNumber() || n.asLong() <= 0 || n.asLong() > Integer.MAX_VALUE) {
                    throw ShrinkException.at(file, k + " is " + n + ", not a positive integer");
                }
                return n.asInt();
            }
        }
        return null;
    }
}
