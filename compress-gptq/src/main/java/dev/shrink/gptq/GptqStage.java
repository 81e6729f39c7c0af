package dev.shrink.gptq;

import dev.shrink.awq.AwqStage;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Calibration;
import dev.shrink.core.forward.Decoder;
import dev.shrink.core.forward.MoeBlocks;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.transform.RotatedModel;
import dev.shrink.core.util.Progress;
import dev.shrink.kernels.cuda.CudaOps;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * GPTQ over a whole model, block by block (shared/docs/ALGORITHMS.md, "the block-by-block loop"):
 * the calibration sequences' inputs of block 0 are computed once; for each block, each
 * true-sequential group of linears sees inputs produced with the earlier groups already quantized;
 * then the quantized block's outputs become the next block's inputs. Memory: one block's weights
 * plus the calibration activations (n sequences × T × C floats).
 *
 * <p>The stage does the loop and the bookkeeping; the math is {@link Gptq#quantize}.
 */
public final class GptqStage {
    private GptqStage() {
    }

    /**
     * @param method         "gptq", "rtn" (round-to-nearest with the same quantizer) or "sparsegpt"
     *                       (GPTQ's solver pruning to {@code prune}, and quantizing too when a scheme is given)
     * @param scheme         the quantization; null only for sparsegpt without quantization
     * @param trueSequential quantize the spec's sequential groups one after another (else all linears from one pass)
     * @param batch          sequences per forward (more rows per GEMM; memory grows with it)
     * @param prune          sparsegpt's target sparsity; null for gptq and rtn
     * @param only           the full names of the decoder linears to process ("model.layers.0.mlp.up_proj");
     *                       null: all. The others stay as they are and are reported as skipped.
     * @param awqScales      gptq only: before each block's linears are quantized, AWQ's per-channel scale search
     *                       ({@code AwqStage.scaleBlock}, duo scaling, at this scheme's bits) scales them, folding
     *                       the scales into the previous norm or linear; GPTQ then quantizes the scaled weights
     * @param gptaq          gptq only: GPTAQ's asymmetric calibration ({@link Gptq#quantize(float[], int, int,
     *                       float[], float[], Gptq.Options, Ops)}), the float model's inputs beside the quantized ones
     * @param expertMinTokens a mixture of experts' expert that receives fewer calibration tokens gets the
     *                       Hessians of every token of its block's MLP input ({@link MoeBlocks#fallbackInputs})
     */
    public record Config(String method, QuantScheme scheme, boolean actOrder, boolean staticGroups,
                         boolean trueSequential, double damp, int blockSize, int batch, SparsityPattern prune,
                         Set<String> only, boolean awqScales, boolean gptaq, MoeBlocks.Threshold expertMinTokens) {
        public Config {
            if (expertMinTokens == null) {
                expertMinTokens = MoeBlocks.Threshold.parse(MoeBlocks.DEFAULT_MIN_TOKENS, "expert tokens");
            }
            if ((awqScales || gptaq) && !method.equals("gptq")) {
                throw new IllegalArgumentException("AWQ scales and GPTAQ go with method gptq only, not " + method);
            }
            only = only == null ? null : Set.copyOf(only);
            if (method.equals("sparsegpt") != (prune != null)) {
                throw new IllegalArgumentException("a sparsity goes with method sparsegpt, and only with it");
            }
            if (scheme == null && prune == null) {
                throw new IllegalArgumentException("method " + method + " needs a quantization scheme");
            }
        }

        /** With the default expert token threshold. */
        public Config(String method, QuantScheme scheme, boolean actOrder, boolean staticGroups,
                      boolean trueSequential, double damp, int blockSize, int batch, SparsityPattern prune,
                      Set<String> only, boolean awqScales, boolean gptaq) {
            this(method, scheme, actOrder, staticGroups, trueSequential, damp, blockSize, batch, prune, only, awqScales,
                    gptaq, null);
        }

        /** This config with another expert token threshold ({@code expertMinTokens}). */
        public Config withExpertMinTokens(MoeBlocks.Threshold t) {
            return new Config(method, scheme, actOrder, staticGroups, trueSequential, damp, blockSize, batch, prune,
                    only, awqScales, gptaq, t);
        }

        /** Without AWQ scales or GPTAQ. */
        public Config(String method, QuantScheme scheme, boolean actOrder, boolean staticGroups,
                      boolean trueSequential, double damp, int blockSize, int batch, SparsityPattern prune,
                      Set<String> only) {
            this(method, scheme, actOrder, staticGroups, trueSequential, damp, blockSize, batch, prune, only, false, false);
        }

        /** This config with AWQ's scales first ({@code awqScales}) and/or GPTAQ ({@code gptaq}). */
        public Config withMethods(boolean awqScales, boolean gptaq) {
            return new Config(method, scheme, actOrder, staticGroups, trueSequential, damp, blockSize, batch, prune,
                    only, awqScales, gptaq, expertMinTokens);
        }

        /** GPTQ or RTN: no pruning. */
        public Config(String method, QuantScheme scheme, boolean actOrder, boolean staticGroups,
                      boolean trueSequential, double damp, int blockSize, int batch) {
            this(method, scheme, actOrder, staticGroups, trueSequential, damp, blockSize, batch, null, null);
        }

        public Gptq.Options options() {
            return new Gptq.Options(scheme, blockSize, damp, actOrder, staticGroups, prune);
        }

        /** Whether the output holds packed quantized linears (else dense pruned weights). */
        public boolean quantizes() {
            return scheme != null;
        }
    }

    /**
     * One linear's outcome. status: "quantized", "pruned" (sparsegpt without quantization) or "skipped"
     * (reason says why). zeros: weights that are exactly 0 in the result (pruned, or zero on input and kept).
     */
    public record LayerReport(String name, int N, int K, String status, String reason, double loss, double damp,
                              boolean dampRaised, int deadColumns, double seconds, long zeros) {
    }

    /** Where the time went, seconds. */
    public record Phases(double forward, double hessian, double cholesky, double columns) {
    }

    /**
     * @param quantized the packed linears by prefix (empty when nothing is quantized)
     * @param pruned    sparsegpt without quantization: the dense pruned weights by tensor name (X.weight → [N, K])
     * @param modified  float tensors that AWQ's scales changed (norms, biases, linears left in float), by full name
     */
    public record Result(Map<String, QuantizedLinear> quantized, List<LayerReport> layers, Phases phases,
                         double seconds, Map<String, float[]> pruned, Map<String, float[]> modified,
                         List<MoeBlocks.Report> experts) {
        public Result(Map<String, QuantizedLinear> quantized, List<LayerReport> layers, Phases phases,
                      double seconds, Map<String, float[]> pruned) {
            this(quantized, layers, phases, seconds, pruned, Map.of(), List.of());
        }
    }

    /** Why a linear cannot be quantized (packed in the GPTQ format) or pruned as asked, or null when it can. */
    public static String unpackableReason(int N, int K, QuantScheme s, SparsityPattern prune) {
        if (prune != null && prune instanceof SparsityPattern.NofM nm && K % nm.m() != 0) {
            return "in-features " + K + " not divisible by M = " + nm.m() + " of the " + nm.n() + ":" + nm.m() + " pattern";
        }
        return s == null ? null : unpackableReason(N, K, s);
    }

    /** Why a linear cannot be packed in the GPTQ format, or null when it can. */
    public static String unpackableReason(int N, int K, QuantScheme s) {
        if (s.groupSize() != -1 && K % s.groupSize() != 0) {
            return "in-features " + K + " not divisible by group size " + s.groupSize();
        }
        if ((long) K * s.bits() % 32 != 0) {
            return "in-features " + K + " × " + s.bits() + " bits not a multiple of 32";
        }
        if ((long) N * s.bits() % 32 != 0) {
            return "out-features " + N + " × " + s.bits() + " bits not a multiple of 32";
        }
        return null;
    }

    /**
     * Quantizes every packable decoder linear of {@code model} with calibration windows
     * {@code windows}: [n][T] token ids.
     */
    public static Result run(ModelDir model, WeightSource src, int[][] windows, Config cfg, Ops ops, boolean quiet) {
        return run(model.config(), model.spec(), src, windows, cfg, ops, quiet);
    }

    /**
     * {@link #run(ModelDir, WeightSource, int[][], Config, Ops, boolean)} for a model given by its
     * config and spec. On the cuda backend, GPTQ runs as {@link DeviceGptq}'s loop (activations and
     * the solver on the GPU) whenever it supports the options; otherwise, and on the CPU backends,
     * as the loop below, each op through {@code ops}.
     */
    public static Result run(ModelConfig mc, ArchitectureSpec spec, WeightSource src, int[][] windows, Config cfg,
                             Ops ops, boolean quiet) {
        if (ops instanceof CudaOps cuda && !cfg.method().equals("rtn")) {
            String why = DeviceGptq.unsupported(cfg, spec);
            int window = mc.shortestWindow();
            if (why == null && window > 0 && window < windows[0].length) {
                // its attention (DeviceOps) attends to all keys; the host loop's ops take the window
                why = "a sliding_window (" + window + ") shorter than the calibration windows";
            }
            if (why == null) {
                return DeviceGptq.run(mc, spec, src, windows, cfg, cuda, quiet, null);
            }
            if (!quiet) {
                System.err.println("gptq: the GPU block loop does not do " + why
                        + "; running the host loop with each op on the GPU (slower)");
            }
        }
        long t0 = System.nanoTime();
        Decoder decoder = new Decoder(mc, spec, ops);
        int n = windows.length, T = windows[0].length, C = mc.hidden();
        int batch = Math.max(1, Math.min(cfg.batch(), n));
        boolean rtn = cfg.method().equals("rtn");

        // Inputs of block 0: the embeddings of every calibration sequence.
        float[][] xs = new float[n][];
        if (!rtn) {
            float[] E = src.floats(spec.embedTokens());
            for (int s = 0; s < n; s++) {
                xs[s] = decoder.embed(E, windows[s]);
            }
        }

        // GPTAQ: the float model's inputs of each block, beside the quantized model's (xs)
        float[][] xsFp = null;
        if (cfg.gptaq()) {
            xsFp = new float[n][];
            for (int s = 0; s < n; s++) {
                xsFp[s] = xs[s].clone();
            }
        }
        Map<String, QuantizedLinear> out = new LinkedHashMap<>();
        Map<String, float[]> pruned = new LinkedHashMap<>();
        Map<String, float[]> modified = new LinkedHashMap<>();
        List<LayerReport> reports = new ArrayList<>();
        List<MoeBlocks.Report> expertReports = new ArrayList<>();
        long minTokens = cfg.expertMinTokens().tokens((long) n * T);
        double tForward = 0, tHessian = 0, tChol = 0, tCols = 0;
        try (Progress progress = new Progress("gptq", mc.layers(), "blocks", quiet)) {
            for (int layer = 0; layer < mc.layers(); layer++) {
                BlockWeights w = BlockWeights.load(src, mc, spec, layer);
                if (cfg.awqScales()) {
                    long ta = System.nanoTime();
                    AwqStage.scaleBlock(decoder, w, xs, cfg.scheme().groupSize(), true, cfg.scheme().bits(),
                            packable(mc, spec, w, layer, cfg), modified, batch, ops);
                    tForward += (System.nanoTime() - ta) / 1e9;
                }
                // GPTAQ's reference: this block in float (after AWQ's scaling, which keeps its function)
                BlockWeights wFp = cfg.gptaq() ? copy(w) : null;
                List<List<String>> groups = cfg.trueSequential() ? MoeBlocks.sequentialGroups(mc, spec, layer)
                        : List.of(MoeBlocks.linears(mc, spec, layer));
                MoeBlocks.Experts<HessianTaps> experts = mc.sparseLayer(layer) && !rtn
                        ? new MoeBlocks.Experts<>(mc, spec, layer, minTokens) : null;
                for (List<String> group : groups) {
                    Set<String> todo = new LinkedHashSet<>();
                    for (String lin : group) {
                        int[] nk = w.shape(lin);
                        String full = spec.layer(layer, lin);
                        if (cfg.only() != null && !cfg.only().contains(full)) {
                            reports.add(new LayerReport(full, nk[0], nk[1], "skipped", "not targeted", 0, 0, false, 0, 0, 0));
                            continue;
                        }
                        String why = unpackableReason(nk[0], nk[1], cfg.scheme(), cfg.prune());
                        if (why != null && cfg.prune() != null) {
                            // the user asked for this sparsity everywhere: do not leave a linear silently dense
                            throw new ShrinkException(full + " [" + nk[0] + ", " + nk[1] + "]: cannot be pruned or quantized as asked: " + why);
                        }
                        if (why != null) {
                            reports.add(new LayerReport(full, nk[0], nk[1], "skipped", why, 0, 0, false, 0, 0, 0));
                        } else {
                            todo.add(lin);
                        }
                    }
                    if (todo.isEmpty()) {
                        continue;
                    }
                    HessianTaps taps = null;
                    if (!rtn) {
                        taps = new HessianTaps(layer, todo, ops);
                        long tf = System.nanoTime();
                        tapAll(decoder, w, xs, wFp, xsFp, batch, T, C, todo, experts == null ? taps : experts.counting(taps), taps);
                        if (experts != null) {
                            // under-routed experts: Hessians of every token of the MLP input (GPTAQ's asymmetry off for them)
                            final int block = layer;
                            experts.fallback(decoder, w, xs, batch, T, todo, () -> new HessianTaps(block, todo, ops),
                                    HessianTaps::nextBatch);
                        }
                        double pass = (System.nanoTime() - tf) / 1e9;
                        tHessian += taps.seconds;
                        tForward += pass - taps.seconds;
                    }
                    for (String lin : todo) {
                        long tl = System.nanoTime();
                        int[] nk = w.shape(lin);
                        float[] W = w.weight(lin);
                        Calibration.requireFiniteWeight(W, spec.layer(layer, lin) + ".weight");
                        GptqResult r;
                        if (rtn) {
                            r = Gptq.roundToNearest(W, nk[0], nk[1], cfg.scheme());
                        } else {
                            try {
                                HessianTaps from = experts != null && experts.fellBack(lin) ? experts.fallbackTaps() : taps;
                                r = Gptq.quantize(W, nk[0], nk[1], from.hessian(lin, n),
                                        cfg.gptaq() && from == taps ? taps.asymmetry(lin, n) : null, cfg.options(), ops);
                            } catch (Gptq.NotPositiveDefinite e) {
                                throw new ShrinkException(spec.layer(layer, lin) + ": " + e.getMessage());
                            }
                            tChol += r.choleskySeconds();
                            tCols += r.columnSeconds();
                        }
                        w.setWeight(lin, r.Q());
                        String full = spec.layer(layer, lin);
                        if (cfg.quantizes()) {
                            out.put(full, new QuantizedLinear(full, nk[0], nk[1], cfg.scheme().bits(), cfg.scheme().groupSize(),
                                    r.codes(), r.scales(), r.zeros(), r.gIdx(), w.bias(lin)));
                        } else {
                            pruned.put(full + ".weight", r.Q());
                        }
                        reports.add(new LayerReport(full, nk[0], nk[1], cfg.quantizes() ? "quantized" : "pruned", null,
                                r.loss(), r.damp(), r.dampRaised(), r.deadColumns(), (System.nanoTime() - tl) / 1e9,
                                r.masked()));
                    }
                }
                if (experts != null) {
                    expertReports.add(experts.report());
                    progress.note(experts.note());
                }
                if (!rtn) {
                    // The quantized block's outputs feed the next block (round-to-nearest needs no inputs).
                    long tf = System.nanoTime();
                    forwardAll(decoder, w, xs, batch, T, C, Taps.NONE, true);
                    if (wFp != null) {
                        forwardAll(decoder, wFp, xsFp, batch, T, C, Taps.NONE, true);
                    }
                    tForward += (System.nanoTime() - tf) / 1e9;
                    for (int s = 0; s < n; s++) {
                        Calibration.requireFiniteActivations(xs[s], layer);
                    }
                }
                progress.step(1);
            }
        }
        for (String name : out.keySet()) {
            modified.remove(name + ".bias"); // written with its quantized linear
        }
        return new Result(out, reports, new Phases(tForward, tHessian, tChol, tCols), (System.nanoTime() - t0) / 1e9,
                pruned, modified, expertReports);
    }

    /** The linears of block {@code layer} this run will quantize (targeted and packable), by spec name. */
    private static Set<String> packable(ModelConfig mc, ArchitectureSpec spec, BlockWeights w, int layer, Config cfg) {
        Set<String> names = new LinkedHashSet<>();
        for (String l : MoeBlocks.linears(mc, spec, layer)) {
            int[] nk = w.shape(l);
            if ((cfg.only() == null || cfg.only().contains(spec.layer(layer, l)))
                    && unpackableReason(nk[0], nk[1], cfg.scheme(), cfg.prune()) == null) {
                names.add(l);
            }
        }
        return names;
    }

    /** A deep copy of a block's weights. */
    private static BlockWeights copy(BlockWeights w) {
        BlockWeights c = w.withNorms(w.inputNorm().clone(), w.postAttentionNorm().clone());
        for (String lin : w.linearNames()) {
            int[] nk = w.shape(lin);
            float[] b = w.bias(lin);
            c.putLinear(lin, w.weight(lin).clone(), b == null ? null : b.clone(), nk[0], nk[1]);
        }
        return c;
    }

    /** Runs block w over every sequence in batches; with {@code update} the outputs replace xs. */
    private static void forwardAll(Decoder decoder, BlockWeights w, float[][] xs, int batch, int T, int C,
                                   Taps taps, boolean update) {
        int n = xs.length;
        for (int s0 = 0; s0 < n; s0 += batch) {
            int B = Math.min(batch, n - s0);
            float[] x = Calibration.gather(xs, s0, B, T * C);
            decoder.block(w, x, B, T, null, taps);
            if (update) {
                Calibration.scatter(x, xs, s0, B, T * C);
            }
        }
    }

    /** Delivers the inputs of {@code linears} for every sequence to the taps, running each block only as far as needed. */
    private static void tapAll(Decoder decoder, BlockWeights w, float[][] xs, BlockWeights wFp, float[][] xsFp, int batch,
                               int T, int C, Set<String> linears, Taps sink, HessianTaps taps) {
        int n = xs.length;
        for (int s0 = 0; s0 < n; s0 += batch) {
            int B = Math.min(batch, n - s0);
            if (wFp != null) {
                // GPTAQ: the same tokens' inputs to these linears in the float model
                Map<String, float[]> fp = new java.util.HashMap<>();
                Taps capture = new Taps() {
                    @Override
                    public void linearInput(int layer, String linear, float[] x, int M, int K) {
                        if (linears.contains(linear)) {
                            fp.put(linear, x.clone());
                        }
                    }
                };
                decoder.tapInputs(wFp, Calibration.gather(xsFp, s0, B, T * C), B, T, linears, capture);
                taps.floatInputs(fp);
            }
            float[] x = Calibration.gather(xs, s0, B, T * C);
            taps.nextBatch();
            decoder.tapInputs(w, x, B, T, linears, sink);
        }
    }

    // ---- The stage as a function: model folder in, GPTQ folder out (shared by `shrink gptq` and the pipeline). ----

    /**
     * Quantizes the model folder {@code model} and writes the GPTQ folder {@code outDir} (atomically,
     * with {@code shrink-report.json}): {@link #run} then {@link GptqCheckpoint#write}.
     *
     * @param windows    calibration windows [n][T] (any single window for "rtn": it reads none)
     * @param reportHead the report's first entries (stage, tool, backend, source, and "calibration"
     *                   when windows were drawn); options, seconds, phases and layers are added here
     * @param quantizer  the tool named in quantization_config.meta.quantizer, e.g. "shrink:0.1.0"
     * @throws ShrinkException when outDir is taken (without overwrite), no linear can be packed, or on
     *                         any error of the run or the writer (nothing is left behind then)
     */
    /**
     * Refuses, before the calibration runs (minutes on large models), an output folder whose disk
     * has not room for the result: the decoder linears at the scheme's bits (a dense copy when
     * only pruning), everything else as stored.
     */
    public static void checkSpace(ModelDir dir, java.nio.file.Path outDir, Config cfg) {
        dev.shrink.core.safetensors.ModelFolderWriter.checkSpace(outDir, dev.shrink.core.safetensors.ModelFolderWriter
                .estimateBytes(dir.weights(), dir.spec()::isLinearWeight, cfg.quantizes() ? cfg.scheme().bits() : 0,
                        cfg.scheme().groupSize()));
    }

    public static Result compress(java.nio.file.Path model, java.nio.file.Path outDir, Config cfg, int[][] windows, Map<String, Object> reportHead,
                                  String quantizer, Ops ops, boolean quiet, boolean overwrite) {
        return compress(model, outDir, cfg, windows, reportHead, quantizer, ops, quiet, overwrite, null);
    }

    /**
     * {@link #compress(java.nio.file.Path, java.nio.file.Path, Config, int[][], Map, String, Ops, boolean, boolean)},
     * first rotating the model ({@link RotatedModel}, as {@code rotate} says; null: no rotation): the
     * rotated weights are quantized, the rotated embedding, head and norms written, and the report gets
     * "rotation".
     */
    public static Result compress(java.nio.file.Path model, java.nio.file.Path outDir, Config cfg, int[][] windows, Map<String, Object> reportHead,
                                  String quantizer, Ops ops, boolean quiet, boolean overwrite, RotatedModel.Settings rotate) {
        dev.shrink.core.safetensors.ModelFolderWriter.checkTarget(model, outDir, overwrite, "the GPTQ model");
        QuantScheme s = cfg.scheme();
        try (ModelDir dir = ModelDir.open(model)) {
            checkSpace(dir, outDir, cfg);
            if (rotate != null && !cfg.quantizes()) {
                throw new ShrinkException("--rotate goes with quantization, not with pruning alone");
            }
            RotatedModel rotated = rotate == null ? null : RotatedModel.of(dir, rotate);
            Result r = run(dir, rotated != null ? rotated : dev.shrink.core.forward.FusedLinears.of(dir), windows, cfg, ops, quiet);
            if (!cfg.quantizes()) {
                // SparseGPT without quantization: a dense folder with exact zeros
                Map<String, Object> report = new LinkedHashMap<>(reportHead);
                report.put("options", cfg);
                report.put("seconds", r.seconds());
                report.put("phases_seconds", r.phases());
                report.put("layers", r.layers());
                if (!r.experts().isEmpty()) {
                    report.put("experts", expertsReport(cfg, r));
                }
                PrunedCheckpoint.write(dir, outDir, r.pruned(), sparsity(r, cfg), report, overwrite);
                return r;
            }
            if (r.quantized().isEmpty()) {
                throw new ShrinkException(model + ": no decoder linear can be packed with --w-bits " + s.bits()
                        + " --w-group-size " + s.groupSize() + " (" + r.layers().get(0).reason() + ")");
            }
            Map<String, Object> report = new LinkedHashMap<>(reportHead);
            report.remove("calibration");
            report.put("options", cfg);
            if (rotated != null) {
                report.put("rotation", rotated.report());
            }
            report.put("calibration", reportHead.get("calibration"));
            report.put("seconds", r.seconds());
            report.put("phases_seconds", r.phases());
            report.put("layers", r.layers());
            if (!r.experts().isEmpty()) {
                report.put("experts", expertsReport(cfg, r));
            }
            GptqCheckpoint.write(dir, outDir, r.quantized(), r.modified(), new GptqFormat(s.bits(), s.groupSize(), s.sym(),
                    cfg.actOrder(), cfg.staticGroups(), cfg.trueSequential(), cfg.damp(), quantizer), report, overwrite,
                    GptqCheckpoint.DEFAULT_MAX_SHARD_BYTES, sparsity(r, cfg), rotated);
            return r;
        }
    }

    /**
     * The report's "experts" entry of a mixture of experts: the threshold as given, the rule, and per sparse
     * block each expert's calibration tokens and those that fell back.
     */
    public static Map<String, Object> expertsReport(Config cfg, Result r) {
        return MoeBlocks.reportEntry(cfg.expertMinTokens(), "Hessian of every token of the block's MLP input",
                r.experts());
    }

    /**
     * What config.json records about SparseGPT's sparsity (each processed linear's zero fraction), or
     * null when the run did not prune (a pruned source's own record is kept with its config).
     */
    public static SparsityRecord sparsity(Result r, Config cfg) {
        if (cfg.prune() == null) {
            return null;
        }
        Map<String, Double> ratios = new LinkedHashMap<>();
        for (LayerReport l : r.layers()) {
            if (!l.status().equals("skipped")) {
                ratios.put(l.name(), (double) l.zeros() / ((long) l.N() * l.K()));
            }
        }
        return new SparsityRecord("sparsegpt", cfg.prune(), null, ratios);
    }
}
