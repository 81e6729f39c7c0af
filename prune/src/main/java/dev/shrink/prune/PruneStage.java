package dev.shrink.prune;

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
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.util.Progress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Pruning over a whole model: the decoder linears chosen by {@code targets} / {@code ignore} (never
 * embeddings, norms or the head) get exact zeros, by magnitude or by Wanda. The math is {@link Masks}
 * and {@link Wanda}; this class does the loop, the bookkeeping and the report.
 *
 * <p>Magnitude needs no data: each linear is read, scored by |W| and masked (per layer, per row, or
 * with one global threshold found by a streaming selection over all targeted linears). Wanda walks
 * the blocks as shared/docs/ALGORITHMS.md's block-by-block loop and the Wanda reference's
 * {@code prune_wanda}: the calibration sequences' inputs of block 0 are the embeddings; for each
 * block one pass gathers Σ x_j² of every targeted linear's inputs, every targeted linear is pruned,
 * then the <em>pruned</em> block's outputs become the next block's inputs. Memory: one block's
 * weights plus the calibration activations (n sequences × T × C floats), plus the pruned linears
 * kept for the writer.
 */
public final class PruneStage {
    private PruneStage() {
    }

    /** The methods this stage runs (SparseGPT lives with GPTQ's machinery in compress-gptq). */
    public static final List<String> METHODS = List.of("magnitude", "wanda");

    /**
     * What to prune and how.
     *
     * @param method  "magnitude" or "wanda"
     * @param pattern unstructured ratio or N:M
     * @param scope   for unstructured: "layer", "row" or "global" (magnitude only); null picks the
     *                method's default (magnitude: layer, Wanda: row); must be null for N:M
     * @param targets name patterns ({@link NamePattern}) of the decoder linears to prune; empty: all
     * @param ignore  name patterns of decoder linears to leave as they are
     * @param batch   calibration sequences per forward (Wanda)
     * @param expertMinTokens Wanda on a mixture of experts: an expert with fewer calibration tokens takes
     *                the norms of every token of its block's MLP input ({@link MoeBlocks#fallbackInputs})
     */
    public record Config(String method, SparsityPattern pattern, String scope, List<String> targets,
                         List<String> ignore, int batch, MoeBlocks.Threshold expertMinTokens) {
        /** With the default expert token threshold. */
        public Config(String method, SparsityPattern pattern, String scope, List<String> targets, List<String> ignore,
                      int batch) {
            this(method, pattern, scope, targets, ignore, batch, null);
        }

        public Config {
            if (expertMinTokens == null) {
                expertMinTokens = MoeBlocks.Threshold.parse(MoeBlocks.DEFAULT_MIN_TOKENS, "expert tokens");
            }
            if (method == null || !METHODS.contains(method)) {
                throw new ShrinkException("prune: unknown method '" + method + "' (known: " + String.join(", ", METHODS) + ")");
            }
            if (pattern == null) {
                throw new ShrinkException("prune: no sparsity pattern given");
            }
            if (pattern instanceof SparsityPattern.NofM nm) {
                if (scope != null) {
                    throw new ShrinkException("prune: scope '" + scope + "' does not apply to the N:M pattern "
                            + nm.label() + ": its groups of " + nm.m() + " are the scope");
                }
            } else {
                Scope s = scope == null ? (method.equals("wanda") ? Scope.ROW : Scope.LAYER) : Scope.parse(scope);
                if (s == Scope.GLOBAL && method.equals("wanda")) {
                    throw new ShrinkException("prune: scope 'global' works with magnitude only: Wanda prunes block by "
                            + "block, each block's scores depending on the blocks pruned before it (use row or layer)");
                }
                scope = s.label();
            }
            targets = targets == null ? List.of() : List.copyOf(targets);
            ignore = ignore == null ? List.of() : List.copyOf(ignore);
            if (batch < 1) {
                throw new ShrinkException("prune: batch must be positive, got " + batch);
            }
        }

        /** The scope as an enum, or null for N:M. */
        public Scope scopeValue() {
            return scope == null ? null : Scope.parse(scope);
        }
    }

    /**
     * One decoder linear in the plan.
     *
     * @param layer  block index
     * @param linear the spec's name within the block ("mlp.down_proj")
     * @param name   the full tensor prefix ("model.layers.3.mlp.down_proj")
     * @param N      out-features
     * @param K      in-features
     * @param reason why it is left as it is, or null when it is pruned
     */
    public record Target(int layer, String linear, String name, int N, int K, String reason) {
        public boolean pruned() {
            return reason == null;
        }
    }

    /**
     * One linear's outcome: {@code status} "pruned" or "kept" (with the reason); {@code pruned} weights
     * this run set to zero; {@code zeros} exact zeros in the weight written; {@code ratio} = zeros / (N·K).
     */
    public record LayerReport(String name, int N, int K, String status, String reason, long pruned, long zeros,
                              double ratio) {
    }

    /**
     * Totals: weights and zeros over the pruned linears, and those zeros as a fraction of every
     * parameter of the model (all floating tensors, embeddings and norms included).
     */
    public record Totals(int linearsPruned, int linearsKept, long linearWeights, long linearZeros, double linearRatio,
                         long parameters, double parameterRatio) {
    }

    /**
     * @param weights tensor name ("…q_proj.weight") → pruned W: [N, K], for the pruned linears only
     * @param layers  every decoder linear, in model order
     * @param record  what config.json records under shrink.sparsity
     */
    public record Result(Map<String, float[]> weights, List<LayerReport> layers, SparsityRecord record, Totals totals,
                         double seconds, List<MoeBlocks.Report> experts) {
    }

    /**
     * Every decoder linear of the model in order, with whether it is pruned. Refuses, before any work,
     * a pattern of {@code targets} / {@code ignore} that matches no decoder linear, a plan that prunes
     * nothing, and a pruned linear whose in-features do not fit an N:M pattern (naming it and its shape).
     */
    public static List<Target> plan(ModelDir model, WeightSource src, Config cfg) {
        return plan(model, src, cfg.pattern(), cfg.targets(), cfg.ignore());
    }

    /**
     * {@link #plan(ModelDir, WeightSource, Config)} for any pruning method (SparseGPT, which runs in
     * GPTQ's machinery, selects its linears with the same rules).
     */
    public static List<Target> plan(ModelDir model, WeightSource src, SparsityPattern pattern, List<String> targetPatterns,
                                    List<String> ignorePatterns) {
        ModelConfig mc = model.config();
        ArchitectureSpec spec = model.spec();
        List<NamePattern> targets = targetPatterns.stream().map(NamePattern::of).toList();
        List<NamePattern> ignore = ignorePatterns.stream().map(NamePattern::of).toList();
        Set<NamePattern> usedTargets = new LinkedHashSet<>(), usedIgnore = new LinkedHashSet<>();
        List<Target> plan = new ArrayList<>();
        String example = null;
        for (int layer = 0; layer < mc.layers(); layer++) {
            for (String linear : MoeBlocks.linears(mc, spec, layer)) { // never a router (docs/FORWARD.md)
                String name = spec.layer(layer, linear);
                example = example == null ? name : example;
                String w = name + ".weight";
                if (!src.has(w)) {
                    throw new ShrinkException(src.origin(w) + ": the weights have no tensor '" + w + "'");
                }
                long[] shape = src.shape(w);
                if (shape.length != 2) {
                    throw new ShrinkException(src.origin(w) + ": tensor '" + w + "' has " + shape.length
                            + " dimensions; a linear's weight has 2");
                }
                int N = Math.toIntExact(shape[0]), K = Math.toIntExact(shape[1]);
                String reason = null;
                if (!targets.isEmpty()) {
                    NamePattern hit = first(targets, name);
                    if (hit == null) {
                        reason = "not matched by targets";
                    } else {
                        usedTargets.add(hit);
                    }
                }
                NamePattern ig = first(ignore, name);
                if (ig != null) {
                    usedIgnore.add(ig);
                    if (reason == null) {
                        reason = "ignored ('" + ig.text() + "')";
                    }
                }
                plan.add(new Target(layer, linear, name, N, K, reason));
            }
        }
        unused(targets, usedTargets, "targets", example);
        unused(ignore, usedIgnore, "ignore", example);
        if (plan.stream().noneMatch(Target::pruned)) {
            throw new ShrinkException(model.dir() + ": the targets and ignore patterns leave no decoder linear to prune");
        }
        for (Target t : plan) {
            String why = t.pruned() ? pattern.unfitReason(t.K()) : null;
            if (why != null) {
                throw new ShrinkException(t.name() + " [" + t.N() + ", " + t.K() + "]: cannot be pruned "
                        + pattern.label() + ": " + why + " (N:M groups run along the input dim); "
                        + "leave it out with --ignore '" + t.name() + "'");
            }
        }
        return plan;
    }

    private static NamePattern first(List<NamePattern> patterns, String name) {
        for (NamePattern p : patterns) {
            if (p.matches(name)) {
                return p;
            }
        }
        return null;
    }

    /** Every pattern must match something: a typo would otherwise silently prune everything or nothing. */
    private static void unused(List<NamePattern> all, Set<NamePattern> used, String what, String example) {
        for (NamePattern p : all) {
            if (!used.contains(p)) {
                throw new ShrinkException(what + " pattern '" + p.text() + "' matches no decoder linear (names look like '"
                        + example + "'; embeddings, norms and lm_head are never pruned)");
            }
        }
    }

    /**
     * Prunes the model's planned decoder linears.
     *
     * @param src     where the float weights come from (the model's own weights for a plain folder)
     * @param windows calibration token windows [n][T] (Wanda); ignored by magnitude (may be null)
     * @param quiet   no progress bar
     */
    public static Result run(ModelDir model, WeightSource src, int[][] windows, Config cfg, Ops ops, boolean quiet) {
        long t0 = System.nanoTime();
        List<Target> plan = plan(model, src, cfg);
        Map<String, float[]> weights = new LinkedHashMap<>();
        List<LayerReport> layers = new ArrayList<>();
        List<MoeBlocks.Report> experts = new ArrayList<>();
        switch (cfg.method()) {
            case "magnitude" -> magnitude(model, src, plan, cfg, ops, quiet, weights, layers);
            case "wanda" -> wanda(model, src, plan, windows, cfg, ops, quiet, weights, layers, experts);
            default -> throw new IllegalStateException("method " + cfg.method());
        }
        Map<String, Double> ratios = new LinkedHashMap<>();
        long linearWeights = 0, linearZeros = 0;
        int pruned = 0;
        for (LayerReport l : layers) {
            if (l.status().equals("pruned")) {
                ratios.put(l.name(), l.ratio());
                linearWeights += (long) l.N() * l.K();
                linearZeros += l.zeros();
                pruned++;
            }
        }
        long parameters = parameters(model.weights());
        Totals totals = new Totals(pruned, layers.size() - pruned, linearWeights, linearZeros,
                (double) linearZeros / linearWeights, parameters, (double) linearZeros / parameters);
        SparsityRecord record = new SparsityRecord(cfg.method(), cfg.pattern(), cfg.scope(), ratios);
        return new Result(weights, layers, record, totals, (System.nanoTime() - t0) / 1e9, experts);
    }

    /**
     * {@link #run} on the folder {@code model}, then the pruned folder written to {@code outDir}
     * ({@link PrunedCheckpoint}): model dir in, model dir out. The target is checked before any work.
     *
     * @param windows calibration windows [n][T] for Wanda; null for magnitude
     */
    /**
     * Refuses, before any scoring or calibration, an output folder whose disk has not room for a
     * dense copy in the source's dtype (the compressed sparse formats take less: a margin).
     */
    public static void checkSpace(ModelDir dir, Path outDir) {
        ModelFolderWriter.checkSpace(outDir, ModelFolderWriter.estimateBytes(dir.weights(), n -> false, 0, 0));
    }

    public static Result compress(Path model, Path outDir, Config cfg, int[][] windows, Ops ops, boolean quiet,
                                  boolean overwrite) {
        try (ModelDir dir = ModelDir.open(model)) {
            PrunedCheckpoint.requireUnquantized(dir);
            ModelFolderWriter.checkTarget(dir.dir(), outDir, overwrite, "the pruned model");
            checkSpace(dir, outDir);
            Result r = run(dir, dev.shrink.core.forward.FusedLinears.of(dir), windows, cfg, ops, quiet);
            Map<String, Object> report = new LinkedHashMap<>();
            report.put("stage", "prune");
            report.put("backend", ops.name());
            report.put("source_model", model.toAbsolutePath().normalize().toString());
            report.putAll(report(r, cfg));
            if (cfg.method().equals("wanda")) {
                Map<String, Object> calibration = new LinkedHashMap<>(); // Map.of's order changes from run to run
                calibration.put("samples", windows.length);
                calibration.put("seqlen", windows[0].length);
                report.put("calibration", calibration);
            }
            PrunedCheckpoint.write(dir, outDir, r.weights(), r.record(), report, overwrite);
            return r;
        }
    }

    /** The report entries of a run: options, the sparsity record, totals, seconds, every linear. */
    public static Map<String, Object> report(Result r, Config cfg) {
        Map<String, Object> options = new LinkedHashMap<>();
        options.put("method", cfg.method());
        options.put("pattern", cfg.pattern().label());
        options.put("ratio", cfg.pattern().ratio());
        options.put("scope", cfg.scope());
        options.put("targets", cfg.targets());
        options.put("ignore", cfg.ignore());
        options.put("batch", cfg.batch());
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("options", options);
        report.put("sparsity", r.record().toJson());
        report.put("totals", r.totals());
        report.put("seconds", r.seconds());
        report.put("layers", r.layers());
        if (!r.experts().isEmpty()) {
            report.put("experts", dev.shrink.core.forward.MoeBlocks.reportEntry(cfg.expertMinTokens(),
                    "norms of every token of the block's MLP input", r.experts()));
        }
        return report;
    }

    // ---- magnitude ----

    private static void magnitude(ModelDir model, WeightSource src, List<Target> plan, Config cfg, Ops ops, boolean quiet,
                                  Map<String, float[]> weights, List<LayerReport> layers) {
        ModelConfig mc = model.config();
        ArchitectureSpec spec = model.spec();
        Scope scope = cfg.scopeValue();
        Masks.Marker global = null;
        if (scope == Scope.GLOBAL) {
            // one threshold over every pruned linear: two streaming passes of |W|, one linear in memory at a time
            List<Target> pruned = plan.stream().filter(Target::pruned).toList();
            long total = pruned.stream().mapToLong(t -> (long) t.N() * t.K()).sum();
            try (Progress progress = new Progress("prune global threshold", 2L * pruned.size(), "linears", quiet)) {
                Iterable<float[]> scores = () -> new Iterator<>() {
                    private int i;

                    @Override
                    public boolean hasNext() {
                        return i < pruned.size();
                    }

                    @Override
                    public float[] next() {
                        String w = pruned.get(i++).name() + ".weight";
                        float[] W = src.floats(w);
                        requireFinite(W, w);
                        progress.step(1);
                        return Masks.magnitude(W);
                    }
                };
                global = new Masks.Marker(Masks.lowestK(scores, Masks.count(cfg.pattern().ratio(), total)));
            }
        }
        try (Progress progress = new Progress("prune magnitude", mc.layers(), "blocks", quiet);
             DeviceMasks device = ops instanceof CudaOps cuda && global == null ? new DeviceMasks(cuda) : null) {
            for (int layer = 0; layer < mc.layers(); layer++) {
                BlockWeights w = BlockWeights.load(src, mc, spec, layer);
                for (Target t : layerTargets(plan, layer)) {
                    float[] W = w.weight(t.linear());
                    if (!t.pruned()) {
                        layers.add(kept(t, W));
                        continue;
                    }
                    requireFinite(W, t.name() + ".weight");
                    boolean[] mask;
                    if (device != null) { // scores and selection on the GPU, the same masks
                        mask = device.mask(W, t.N(), t.K(), null, cfg.pattern(), scope);
                    } else {
                        float[] S = Masks.magnitude(W); // S: [N, K]
                        mask = global != null ? global.mark(S) : Masks.mask(S, t.N(), t.K(), cfg.pattern(), scope);
                    }
                    layers.add(prune(t, W, mask, weights));
                }
                progress.step(1);
            }
        }
        if (global != null && global.marked() != global.threshold().k()) {
            throw new IllegalStateException("global selection marked " + global.marked() + " of " + global.threshold().k());
        }
    }

    // ---- Wanda ----

    private static void wanda(ModelDir model, WeightSource src, List<Target> plan, int[][] windows, Config cfg,
                              Ops ops, boolean quiet, Map<String, float[]> weights, List<LayerReport> layers,
                              List<MoeBlocks.Report> experts) {
        if (windows == null || windows.length == 0 || windows[0].length == 0) {
            throw new ShrinkException("prune: Wanda needs calibration windows");
        }
        ModelConfig mc = model.config();
        ArchitectureSpec spec = model.spec();
        Decoder decoder = new Decoder(mc, spec, ops);
        Scope scope = cfg.scopeValue();
        int n = windows.length, T = windows[0].length, C = mc.hidden();
        for (int[] win : windows) {
            if (win.length != T) {
                throw new IllegalArgumentException("calibration windows of different lengths: " + T + " and " + win.length);
            }
        }
        int batch = Math.min(cfg.batch(), n);
        int lastLayer = plan.stream().filter(Target::pruned).mapToInt(Target::layer).max().orElse(-1);

        // Inputs of block 0: the embeddings of every calibration sequence. xs[s]: [T, C]
        float[][] xs = new float[n][];
        float[] E = src.floats(spec.embedTokens());
        for (int s = 0; s < n; s++) {
            xs[s] = decoder.embed(E, windows[s]);
        }
        E = null;
        try (Progress progress = new Progress("prune wanda", mc.layers(), "blocks", quiet);
             DeviceMasks device = ops instanceof CudaOps cuda ? new DeviceMasks(cuda) : null) {
            for (int layer = 0; layer < mc.layers(); layer++) {
                BlockWeights w = BlockWeights.load(src, mc, spec, layer);
                List<Target> here = layerTargets(plan, layer);
                Set<String> todo = new LinkedHashSet<>();
                here.stream().filter(Target::pruned).forEach(t -> todo.add(t.linear()));
                NormTaps taps = new NormTaps(layer, todo);
                final int block = layer;
                MoeBlocks.Experts<NormTaps> moe = mc.sparseLayer(layer) && !todo.isEmpty()
                        ? new MoeBlocks.Experts<>(mc, spec, layer, cfg.expertMinTokens().tokens((long) n * T)) : null;
                if (!todo.isEmpty()) {
                    // one pass: Σ x_j² of every targeted linear's inputs (an expert's: its routed rows), from the unpruned block
                    Taps sink = moe == null ? taps : moe.counting(taps);
                    for (int s0 = 0; s0 < n; s0 += batch) {
                        int B = Math.min(batch, n - s0);
                        float[] x = Calibration.gather(xs, s0, B, T * C); // [B·T, C]
                        taps.nextBatch();
                        decoder.tapInputs(w, x, B, T, todo, sink);
                    }
                    if (moe != null) { // under-routed experts: the norms of every token of the MLP input
                        moe.fallback(decoder, w, xs, batch, T, todo, () -> new NormTaps(block, todo), NormTaps::nextBatch);
                        experts.add(moe.report());
                        progress.note(moe.note());
                    }
                }
                for (Target t : here) {
                    float[] W = w.weight(t.linear());
                    if (!t.pruned()) {
                        layers.add(kept(t, W));
                        continue;
                    }
                    requireFinite(W, t.name() + ".weight");
                    double[] sumSq = (moe != null && moe.fellBack(t.linear()) ? moe.fallbackTaps() : taps).sumSq(t.linear());
                    boolean[] mask = device != null ? device.mask(W, t.N(), t.K(), sumSq, cfg.pattern(), scope)
                            : Wanda.mask(W, t.N(), t.K(), sumSq, cfg.pattern(), scope);
                    layers.add(prune(t, W, mask, weights));
                    w.setWeight(t.linear(), weights.get(t.name() + ".weight"));
                }
                if (layer < lastLayer) {
                    // the pruned block's outputs feed the next block
                    for (int s0 = 0; s0 < n; s0 += batch) {
                        int B = Math.min(batch, n - s0);
                        float[] x = Calibration.gather(xs, s0, B, T * C);
                        decoder.block(w, x, B, T, null, Taps.NONE);
                        Calibration.requireFiniteActivations(x, layer);
                        Calibration.scatter(x, xs, s0, B, T * C);
                    }
                }
                progress.step(1);
            }
        }
    }

    // ---- shared ----

    private static List<Target> layerTargets(List<Target> plan, int layer) {
        return plan.stream().filter(t -> t.layer() == layer).toList();
    }

    /** Zeros a copy of W where masked, keeps it for the writer, and reports it. */
    private static LayerReport prune(Target t, float[] W, boolean[] mask, Map<String, float[]> weights) {
        float[] P = W.clone(); // the source's array may be shared: never modify it
        long pruned = Masks.apply(P, mask);
        long zeros = Masks.zeros(P);
        weights.put(t.name() + ".weight", P);
        return new LayerReport(t.name(), t.N(), t.K(), "pruned", null, pruned, zeros, (double) zeros / P.length);
    }

    private static LayerReport kept(Target t, float[] W) {
        long zeros = Masks.zeros(W);
        return new LayerReport(t.name(), t.N(), t.K(), "kept", t.reason(), 0, zeros, (double) zeros / W.length);
    }

    private static void requireFinite(float[] W, String name) {
        for (float v : W) {
            if (!Float.isFinite(v)) {
                throw new ShrinkException(name + ": the weight holds NaN or Inf; refusing to prune it");
            }
        }
    }

    /** Elements of every floating tensor of the folder. */
    private static long parameters(WeightStore store) {
        long n = 0;
        for (String name : store.names()) {
            var info = store.info(name);
            if (info.dtype().isFloating()) {
                n += info.numel();
            }
        }
        return n;
    }
}
