package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.Gpu;
import dev.shrink.eval.MemoryEstimate;
import dev.shrink.eval.MemoryEstimate.Dims;
import dev.shrink.eval.MemoryEstimate.ElementType;
import dev.shrink.eval.MemoryEstimate.KvDtype;
import dev.shrink.eval.MemoryEstimate.Weights;
import dev.shrink.eval.MemoryEstimate.Workload;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code shrink estimate}: memory for weights, KV cache and activations, and the decode floor, for a GPU. */
@Command(name = "estimate", mixinStandardHelpOptions = true,
        description = {
            "Estimate GPU memory (weights, KV cache, activations), FLOPs per token, prefill and decode latency,",
            "throughput and the largest batch that fits, for a model folder (weights at their real size from the",
            "safetensors headers), a config.json, or explicit dimensions. GB = 10^9 bytes, GiB = 2^30 bytes."},
        footer = {"", "Formulas (L layers, C hidden, H/Hkv heads, D head dim, F intermediate, V vocab; B batch, T prompt, n new):",
            "  KV bytes/token   2·L·Hkv·D·bytes; int8/int4: 2·L·(Hkv·D·bits/8 + Hkv·4) (fp16 scale and zero per token and head)",
            "  KV cache         KV bytes/token · B·(T + n)",
            "  FLOPs/token      2·(L·(2·C·H·D + 2·C·Hkv·D + 3·C·F) + V·C) + 4·L·H·D·context (q·kᵀ and p·v)",
            "  prefill          max(B·(T·linear FLOPs + head + 2·L·H·D·T·(T+1)) / tensor FLOP/s, weight bytes / bandwidth)",
            "  decode step      max((weight bytes + KV bytes/token · B·(T + (n+1)/2)) / bandwidth, B·FLOPs/token / tensor FLOP/s)",
            "  tokens/s         prefill B·T / prefill; decode B / step (per sequence 1 / step); throughput B·n / (prefill + n·step)",
            "  largest batch    floor((GPU memory - weights) / (KV bytes/token · (T + n) + activations of one sequence))",
            "  (weights read per step exclude an untied input embedding table: only B rows are gathered)",
            "", "Examples:",
            "  shrink estimate ../shared/models/fixture-llama-14m --batch 16 --prompt-tokens 512 --new-tokens 32 --gpu l4",
            "  shrink estimate --layers 48 --hidden 6144 --params 20e9 --batch 16 --prompt-tokens 512 --new-tokens 32 --gpu a100-80g",
            "  shrink estimate config.json --w-bits 4 --kv-dtype fp8 --gpu h100 --json",
            "  shrink estimate MODEL_DIR --batch 1 --prompt-tokens 128 --new-tokens 32 --gpu h100 --json   (vs eval --speed)",
            "", "GPUs: h100, h100-pcie, h100-nvl, h200, a100-80g, a100-80g-pcie, a100-40g, l40s, l4, a10, rtx4090, rtx3090,",
            "      v100-32g, t4, mi300x (vendor datasheet memory, bandwidth and dense fp16/bf16 tensor FLOP/s)."})
final class EstimateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    ModelOption modelArg;

    Path model;

    @Mixin
    HubOptions hub;

    @Option(names = "--layers", paramLabel = "L", description = "Decoder layers.")
    Integer layers;

    @Option(names = "--hidden", paramLabel = "C", description = "Hidden size.")
    Integer hidden;

    @Option(names = "--heads", paramLabel = "H", description = "Attention heads (default: multi-head, KV width = hidden).")
    Integer heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "KV heads for GQA/MQA (default: --heads).")
    Integer kvHeads;

    @Option(names = "--head-dim", paramLabel = "D", description = "Head dimension (default: hidden / heads).")
    Integer headDim;

    @Option(names = "--intermediate", paramLabel = "F", description = "MLP intermediate size (SwiGLU).")
    Integer intermediate;

    @Option(names = "--vocab", paramLabel = "V", description = "Vocabulary size.")
    Integer vocab;

    @Option(names = "--tied", description = "The output head is the embedding table (with explicit dimensions).")
    boolean tied;

    @Option(names = "--params", paramLabel = "N", description = "Parameter count (e.g. 20e9), instead of computing it from the dimensions.")
    Double params;

    @Option(names = "--batch", defaultValue = "1", paramLabel = "B", description = "Sequences decoded together. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Option(names = "--prompt-tokens", defaultValue = "512", paramLabel = "T", description = "Prompt tokens per sequence. Default: ${DEFAULT-VALUE}.")
    int promptTokens;

    @Option(names = "--new-tokens", defaultValue = "128", paramLabel = "N", description = "Generated tokens per sequence. Default: ${DEFAULT-VALUE}.")
    int newTokens;

    @Option(names = "--kv-dtype", defaultValue = "fp16", paramLabel = "TYPE", description = "KV cache type: fp16, bf16, fp8, fp32, int8, int4 (int8/int4 with an fp16 scale and zero point per token and KV head, as LMDeploy's --quant-policy 8/4). Default: ${DEFAULT-VALUE}.")
    String kvDtype;

    @Option(names = "--weight-dtype", paramLabel = "TYPE",
            description = "Weight type for a config.json or explicit dimensions: fp32, fp16, bf16, fp8, int8 (default: the config's torch_dtype, else fp16).")
    String weightDtype;

    @Option(names = "--w-bits", paramLabel = "B", description = "Decoder linears quantized to B bits (2..8), with a fp16 scale and B-bit zero per group (config.json or dimensions).")
    Integer wBits;

    @Option(names = "--w-group-size", defaultValue = "128", paramLabel = "G", description = "Group size for --w-bits (-1: one per row). Default: ${DEFAULT-VALUE}.")
    int wGroupSize;

    @Option(names = "--gpu", paramLabel = "NAME", description = "Compare with this GPU's memory and bandwidth (see the list below).")
    String gpu;

    @Option(names = "--eager-attention", description = "Count the B·H·T² attention scores (eager attention; fused attention never holds them).")
    boolean eagerAttention;

    @Option(names = "--json", description = "Print the estimate as JSON on stdout instead of the table (keys: docs/JSON.md).")
    boolean json;

    @Option(names = {"-q", "--quiet"}, description = "No progress (a model given as a Hugging Face id downloads silently).")
    boolean quiet;

    @Option(names = "--debug", description = "Print stack traces with errors.")
    boolean debug;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        model = hub.resolve(modelArg.optional(), quiet);
        MemoryEstimate e = estimate();
        if (json) {
            out.println(Json.write(e));
        } else {
            print(out, e);
        }
        return 0;
    }

    MemoryEstimate estimate() {
        checkOptions();
        Gpu g = gpu == null ? null : Gpu.named(gpu);
        KvDtype kv = KvDtype.parse(kvDtype, "--kv-dtype");
        Workload wl = new Workload(batch, promptTokens, newTokens);
        Dims d;
        Weights w;
        if (model != null) {
            boolean folder = Files.isDirectory(model);
            Path configFile = folder ? model.resolve("config.json") : model;
            if (!folder && !Files.isRegularFile(model)) {
                throw ShrinkException.at(model, "no such model folder or config.json");
            }
            d = Dims.fromConfigJson(configFile);
            if (folder && Files.exists(configFile)) {
                if (weightDtype != null || wBits != null || params != null) {
                    throw new ShrinkException("--weight-dtype, --w-bits and --params apply to a config.json or explicit "
                            + "dimensions; a model folder is estimated at the size of its weights (" + model + ")");
                }
                try (WeightStore store = WeightStore.open(model)) {
                    w = MemoryEstimate.folderWeights(store);
                }
            } else {
                w = configWeights(d, Dims.dtypeOf(configFile));
            }
        } else {
            d = new Dims(layers, hidden, heads, heads == null ? null : kvHeads == null ? heads : kvHeads,
                    heads == null ? null : headDim == null ? hidden / heads : headDim, intermediate, vocab, tied, "the options");
            w = configWeights(d, null);
        }
        return MemoryEstimate.estimate(d, w, wl, kv, eagerAttention, g);
    }

    private Weights configWeights(Dims d, String configDtype) {
        ElementType dtype = ElementType.parse(weightDtype != null ? weightDtype : configDtype != null ? configDtype : "fp16",
                weightDtype != null ? "--weight-dtype" : d.source() + " torch_dtype");
        if (params != null) {
            if (wBits != null) {
                throw new ShrinkException("--w-bits needs the layer dimensions to tell the linears from the embeddings; "
                        + "give --intermediate and --vocab instead of --params");
            }
            if (!(params >= 1) || params > 1e15) {
                throw new ShrinkException("--params: " + params + " is not a parameter count");
            }
            return MemoryEstimate.paramWeights(Math.round(params), dtype, d);
        }
        if (!MemoryEstimate.canComputeWeights(d) && wBits == null && weightDtype == null) {
            return null; // KV cache and activations only; the table says what to add
        }
        return MemoryEstimate.computedWeights(d, dtype, wBits, wGroupSize);
    }

    private void checkOptions() {
        boolean dims = layers != null || hidden != null || heads != null || kvHeads != null || headDim != null
                || intermediate != null || vocab != null || tied;
        if (model != null && dims) {
            throw new ShrinkException("give a model folder or config.json, or dimensions (--layers, --hidden, ...), not both");
        }
        if (model == null) {
            if (layers == null || hidden == null) {
                throw new ShrinkException("estimate needs a MODEL (a model folder or its config.json), or at least --layers and --hidden"
                        + (layers == null && hidden == null ? "" : " (missing " + (layers == null ? "--layers" : "--hidden") + ")"));
            }
            positive("--layers", layers);
            positive("--hidden", hidden);
            if (heads != null) {
                positive("--heads", heads);
                if (headDim == null && hidden % heads != 0) {
                    throw new ShrinkException("--hidden " + hidden + " is not divisible by --heads " + heads + "; give --head-dim");
                }
            }
            if ((kvHeads != null || headDim != null) && heads == null) {
                throw new ShrinkException((kvHeads != null ? "--kv-heads" : "--head-dim") + " needs --heads");
            }
            if (kvHeads != null) {
                positive("--kv-heads", kvHeads);
                if (heads % kvHeads != 0) {
                    throw new ShrinkException("--heads " + heads + " is not a multiple of --kv-heads " + kvHeads);
                }
            }
            if (headDim != null) {
                positive("--head-dim", headDim);
            }
            if (intermediate != null) {
                positive("--intermediate", intermediate);
            }
            if (vocab != null) {
                positive("--vocab", vocab);
            }
        }
        positive("--batch", batch);
        if (promptTokens < 0 || newTokens < 0 || promptTokens + newTokens == 0) {
            throw new ShrinkException("--prompt-tokens and --new-tokens must be >= 0 and not both 0");
        }
        if (wBits != null && (wBits < 2 || wBits > 8)) {
            throw new ShrinkException("--w-bits: " + wBits + " is not supported (2..8)");
        }
        if (wGroupSize == 0 || wGroupSize < -1) {
            throw new ShrinkException("--w-group-size: " + wGroupSize + " (a positive group size, or -1)");
        }
    }

    private static void positive(String option, int v) {
        if (v <= 0) {
            throw new ShrinkException(option + ": " + v + " must be positive");
        }
    }

    static void print(PrintWriter out, MemoryEstimate e) {
        Dims d = e.dims();
        Workload wl = e.workload();
        out.printf(Locale.ROOT, "estimate for %s: batch %d × (%d prompt + %d new tokens), KV cache %s%n",
                d.source(), wl.batch(), wl.promptTokens(), wl.newTokens(), e.kvCache().dtype());
        out.printf(Locale.ROOT, "  layers %d, hidden %d, %s, intermediate %s, vocab %s%s%n", d.layers(), d.hidden(),
                d.heads() == null ? "heads not given (multi-head)"
                        : "heads " + d.heads() + ", kv heads " + d.kvHeadCount()
                        + (d.kvHeadCount() < d.heads() ? " (GQA)" : "") + ", head dim " + d.effectiveHeadDim(),
                d.intermediate() == null ? "?" : d.intermediate(), d.vocab() == null ? "?" : d.vocab(),
                d.tiedEmbeddings() ? ", tied embeddings" : "");
        out.println();
        out.printf(Locale.ROOT, "  %-12s %18s %10s %10s%n", "", "bytes", "GB", "GiB");
        if (e.weights() != null) {
            row(out, "weights", e.weights().bytes());
        } else {
            out.printf(Locale.ROOT, "  %-12s %18s%n", "weights", "unknown");
        }
        row(out, "KV cache", e.kvCache().bytes());
        row(out, "activations", e.activations().peakBytes());
        if (e.totalBytes() != null) {
            row(out, "total", e.totalBytes());
        } else {
            out.printf(Locale.ROOT, "  %-12s %18s%n", "total", "unknown");
        }
        out.println();
        out.println("  weights:     " + (e.weights() != null ? e.weights().how()
                : "not sized: give --params N, or --intermediate and --vocab (no total, fit or decode floor without them)"));
        out.println("  KV cache:    " + e.kvCache().formula());
        out.println("  activations: " + e.activations().formula());
        for (String a : e.activations().assumptions()) {
            out.println("               (" + a + ")");
        }
        Gpu g = e.gpu();
        if (g == null) {
            out.println();
            out.println("  (give --gpu NAME to compare with a GPU's memory and get the decode floor)");
            return;
        }
        out.println();
        out.printf(Locale.ROOT, "  %s: %.0f GB %s, %.0f GB/s (%s)%n", g.name(), g.memoryBytes() / 1e9, g.memoryType(),
                g.bandwidth() / 1e9, g.source());
        if (e.totalBytes() == null) {
            out.println("  fit and decode floor: unknown without the weights");
            return;
        }
        long free = g.memoryBytes() - e.totalBytes();
        out.printf(Locale.ROOT, "  %s: total %.2f GB of %.0f GB, %.2f GB %s%n", e.fits() ? "fits" : "DOES NOT FIT",
                e.totalBytes() / 1e9, g.memoryBytes() / 1e9, Math.abs(free) / 1e9, free >= 0 ? "to spare" : "short");
        MemoryEstimate.Decode dec = e.decode();
        out.printf(Locale.ROOT, "  decode floor: a step reads %s: >= %s per step, at most %,.0f tokens/s for the batch (%,.1f per sequence)%n",
                dec.formula(), duration(dec.secondsPerStep()), dec.tokensPerSecond(), dec.tokensPerSecondPerSequence());
        MemoryEstimate.Compute c = e.compute();
        out.println();
        if (c == null) {
            out.println("  FLOPs and latency: unknown without --intermediate and --vocab, or --params");
        } else {
            out.printf(Locale.ROOT, "  FLOPs per token: prefill %.4g (mean over the prompt), decode %.4g (at the mean context)%n",
                    c.prefillFlopsPerToken(), c.decodeFlopsPerToken());
            out.printf(Locale.ROOT, "  prefill: %s (%s-bound), %,.0f tokens/s%n", duration(c.prefillSeconds()),
                    c.prefillBound(), c.prefillTokensPerSecond());
            out.printf(Locale.ROOT, "  decode:  %s per step (%s-bound), %,.1f tokens/s per sequence, %,.0f for the batch%n",
                    duration(c.decodeSecondsPerStep()), c.decodeBound(), c.decodeTokensPerSecondPerSequence(),
                    c.decodeTokensPerSecond());
            out.printf(Locale.ROOT, "  total:   %s for prefill + %d steps; throughput %,.0f generated tokens/s%n",
                    duration(c.totalSeconds()), wl.newTokens(), c.throughput());
            out.println("  (" + c.formula() + "; " + g.tensorFlops() / 1e12 + " TFLOP/s: " + g.flopsSource() + ")");
        }
        out.println();
        out.printf(Locale.ROOT, "  largest batch on %s at %d + %d tokens:", g.id(), wl.promptTokens(), wl.newTokens());
        for (MemoryEstimate.BatchFit b : e.maxBatch()) {
            out.printf(Locale.ROOT, "  %s %,d", b.kvDtype(), b.maxBatch());
        }
        out.println();
    }

    private static void row(PrintWriter out, String what, long bytes) {
        out.printf(Locale.ROOT, "  %-12s %,18d %10.3f %10.3f%n", what, bytes, bytes / 1e9, bytes / (double) (1L << 30));
    }

    private static String duration(double s) {
        if (s >= 1) {
            return String.format(Locale.ROOT, "%.3f s", s);
        }
        if (s >= 1e-3) {
            return String.format(Locale.ROOT, "%.3f ms", s * 1e3);
        }
        return String.format(Locale.ROOT, "%.1f µs", s * 1e6);
    }
}
