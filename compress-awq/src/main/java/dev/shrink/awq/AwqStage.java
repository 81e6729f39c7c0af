package dev.shrink.awq;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Calibration;
import dev.shrink.core.forward.Decoder;
import dev.shrink.core.forward.MoeBlocks;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.AwqMapping;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.transform.RotatedModel;
import dev.shrink.core.util.Progress;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * AWQ W4A16 over a whole model, block by block (Lin et al. 2023, "AWQ: Activation-aware Weight
 * Quantization for LLM Compression and Acceleration"; shared/docs/ALGORITHMS.md, "AWQ"), as
 * llm-awq's {@code run_awq} and AutoAWQ's quantizer do it. For each block i:
 * <ol>
 *   <li>statistics: the original block runs over every calibration sequence; per input channel of
 *       each mapping's consumers x_mean = mean |x|, the Gram matrix Σ x·xᵀ of linears inspected on
 *       their own, ~512 sampled input rows of every linear (for clipping), and the original block's
 *       outputs, which feed block i + 1 (AWQ feeds the <b>original</b> outputs forward);</li>
 *   <li>scale search ({@link ScaleSearch}) for each of the spec's mappings on the original weights:
 *       the grid's candidates evaluated together, their weights stacked so that one GEMM computes
 *       every candidate's projections ({@link Decoder#attention}, {@link Decoder#mlp} with R sets); a
 *       linear inspected alone is scored from its Gram matrix; → one {@link ScalePlan} per mapping;</li>
 *   <li>the plans applied ({@link AwqApply#scale}); the sampled inputs of consumers divided by s;</li>
 *   <li>clip search ({@link ClipSearch}) on every quantized linear but the Q and K roles, on the
 *       scaled weights and inputs → {@link ClipPlan}s, applied;</li>
 *   <li>round-to-nearest with zero points ({@link AwqQuantizer}), no error feedback.</li>
 * </ol>
 * Memory: one block's weights (plus the stacked candidates) and the calibration activations
 * (2 · n · T · C floats). The math lives in {@link ScaleSearch}, {@link ClipSearch}, {@link AwqQuantizer}
 * and {@link AwqApply}; this class is the loop, the wiring and the bookkeeping.
 */
public final class AwqStage {
    private AwqStage() {
    }

    /** Floats of candidate activations computed at once in the scale search (~128 MB). */
    static final long CANDIDATE_FLOATS = 32L << 20;
    /** Floats of stacked candidate weights held at once (~256 MB); more candidates run in several passes. */
    static final long STACK_FLOATS = 64L << 20;

    /**
     * @param groupSize  input columns per quantization group (−1: one group per row)
     * @param duoScaling AutoAWQ's {@code x_mean^α / w_mean^(1−α)} grid (else llm-awq's {@code x_mean^α})
     * @param clip       run the clip search
     * @param skipUnfit  leave layers AWQ cannot pack unquantized (else an error)
     * @param batch      calibration sequences per forward of the statistics pass
     * @param expertMinTokens a mixture of experts' expert with fewer calibration tokens gets no up → down
     *                   scale search and no clip search (too few inputs to judge them): zero-point
     *                   round-to-nearest after the shared gate/up scaling
     */
    public record Config(int groupSize, boolean duoScaling, boolean clip, boolean skipUnfit, int batch,
                         MoeBlocks.Threshold expertMinTokens) {
        /** With the default expert token threshold. */
        public Config(int groupSize, boolean duoScaling, boolean clip, boolean skipUnfit, int batch) {
            this(groupSize, duoScaling, clip, skipUnfit, batch, null);
        }

        public Config {
            if (expertMinTokens == null) {
                expertMinTokens = MoeBlocks.Threshold.parse(MoeBlocks.DEFAULT_MIN_TOKENS, "expert tokens");
            }
            if (groupSize != -1 && groupSize <= 0) {
                throw new IllegalArgumentException("group size must be positive or -1, got " + groupSize);
            }
            if (batch < 1) {
                throw new IllegalArgumentException("batch must be positive, got " + batch);
            }
        }
    }

    /** One mapping of one block: the chosen ratio, its loss, α = 0's and every ratio's; or why it was skipped (numbers null). */
    public record MappingReport(int layer, String previous, List<String> consumers, String inspect, String status,
                                String reason, Double ratio, Double loss, Double lossAtZero, double[] losses) {
    }

    /** One linear's clip search: mean factor, share of clipped (row, group), group output error before/after. */
    public record ClipReport(String name, double meanFactor, double clippedFraction, double errorBefore, double errorAfter) {
    }

    /**
     * One linear's outcome. status: "quantized" or "skipped" (reason says why). errorRtn: mean squared
     * output error of plain round-to-nearest on the original weight; errorAwq: that of the AWQ-quantized
     * (scaled, clipped) weight against the same scaled linear in float; both on the sampled tokens.
     */
    public record LayerReport(String name, int N, int K, String status, String reason, Double errorRtn, Double errorAwq) {
    }

    /** Where the time went, seconds. */
    public record Phases(double statistics, double scaleSearch, double clipSearch, double quantize) {
    }

    /**
     * @param quantized tensor prefix → its quantized linear (codes of the scaled, clipped weight)
     * @param modified  float tensors the scaling changed that are written as floats: norm weights, and
     *                  the weights and biases of unquantized previous linears (full tensor names)
     */
    public record Result(Map<String, QuantizedLinear> quantized, Map<String, float[]> modified,
                         List<ScalePlan> scalePlans, List<ClipPlan> clipPlans, List<MappingReport> mappings,
                         List<ClipReport> clips, List<LayerReport> layers, Phases phases, double seconds,
                         List<MoeBlocks.Report> experts) {
        public Result(Map<String, QuantizedLinear> quantized, Map<String, float[]> modified,
                      List<ScalePlan> scalePlans, List<ClipPlan> clipPlans, List<MappingReport> mappings,
                      List<ClipReport> clips, List<LayerReport> layers, Phases phases, double seconds) {
            this(quantized, modified, scalePlans, clipPlans, mappings, clips, layers, phases, seconds, List.of());
        }
    }

    /** What the inspected module of a mapping is. */
    enum Module { ATTENTION, MLP, LINEAR }

    /** A mapping of the spec resolved against a block. */
    record Resolved(AwqMapping mapping, Module module, List<String> consumers, int K, String input) {
    }

    /**
     * Runs AWQ over every decoder block of {@code model} with calibration windows {@code windows}
     * ([n][T] token ids).
     *
     * @throws ShrinkException naming the layer when a linear cannot be packed (without skipUnfit),
     *                         when weights or activations are not finite, or a mapping does not fit
     */
    public static Result run(ModelDir model, WeightSource src, int[][] windows, Config cfg, Ops ops, boolean quiet) {
        return run(model.config(), model.spec(), src, windows, cfg, ops, quiet);
    }

    /**
     * {@link #run(ModelDir, WeightSource, int[][], Config, Ops, boolean)} for a config and spec given
     * directly. On the cuda backend the loop runs on the GPU ({@link DeviceAwq}: activations resident
     * there, the grids batched in awq.cu) with the same steps and the same host-side choices.
     */
    public static Result run(ModelConfig mc, ArchitectureSpec spec, WeightSource src, int[][] windows, Config cfg, Ops ops,
                             boolean quiet) {
        int window = mc.shortestWindow();
        // the GPU loop's attention (DeviceOps) attends to all keys; the host loop's ops take the window
        if (ops instanceof dev.shrink.kernels.cuda.CudaOps cuda && DeviceAwq.unsupported(spec) == null
                && (window == 0 || window >= windows[0].length)) {
            return DeviceAwq.run(mc, spec, src, windows, cfg, cuda, quiet, null);
        }
        long t0 = System.nanoTime();
        if (windows.length == 0 || windows[0].length == 0) {
            throw new IllegalArgumentException("no calibration windows");
        }
        Decoder decoder = new Decoder(mc, spec, ops);
        int n = windows.length, T = windows[0].length, C = mc.hidden();
        long tokens = (long) n * T;
        int batch = Math.max(1, Math.min(cfg.batch(), n));
        int stride = ClipSearch.sampleStride(tokens);
        int gs = cfg.groupSize();

        float[][] xs = new float[n][];
        {
            float[] E = src.floats(spec.embedTokens());
            for (int s = 0; s < n; s++) {
                xs[s] = decoder.embed(E, windows[s]);
            }
        }

        Map<String, QuantizedLinear> quantized = new LinkedHashMap<>();
        Map<String, float[]> modified = new LinkedHashMap<>();
        List<ScalePlan> scalePlans = new ArrayList<>();
        List<ClipPlan> clipPlans = new ArrayList<>();
        List<MappingReport> mappingReports = new ArrayList<>();
        List<ClipReport> clipReports = new ArrayList<>();
        List<LayerReport> layerReports = new ArrayList<>();
        List<MoeBlocks.Report> expertReports = new ArrayList<>();
        long minTokens = cfg.expertMinTokens().tokens(tokens);
        double tStats = 0, tSearch = 0, tClip = 0, tQuant = 0;

        for (int layer = 0; layer < mc.layers(); layer++) {
            BlockWeights w = BlockWeights.load(src, mc, spec, layer);
            // Which linears AWQ can pack.
            Set<String> fit = new LinkedHashSet<>();
            Map<String, String> unfit = new LinkedHashMap<>();
            sortLinears(spec, w, layer, gs, cfg.skipUnfit(), fit, unfit);
            List<Resolved> active = new ArrayList<>();
            List<MappingReport> skippedMappings = new ArrayList<>();
            for (AwqMapping m : MoeAwq.mappings(mc, spec, layer)) {
                String why = skipReason(spec, w, m, fit, unfit);
                if (why != null) {
                    skippedMappings.add(new MappingReport(layer, spec.layer(layer, m.previous()), full(spec, layer, m.consumers()),
                            m.inspect(), "skipped", why, null, null, null, null));
                } else {
                    active.add(resolve(spec, w, m));
                }
            }

            int searchUnits = active.stream().anyMatch(r -> r.module != Module.LINEAR) ? 1 : 0;
            try (Progress progress = new Progress("awq block " + (layer + 1) + "/" + mc.layers(),
                    (long) n * (1 + searchUnits), "seq", quiet)) {
                // 1. Statistics of the original block; its outputs feed the next block.
                long ts = System.nanoTime();
                float[][] next = new float[n][];
                StatsTaps stats = statistics(decoder, w, active, fit, xs, next, batch, stride, ops, progress);
                tStats += (System.nanoTime() - ts) / 1e9;
                Set<Integer> underRouted = new java.util.TreeSet<>();
                if (mc.sparseLayer(layer)) {
                    expertReports.add(MoeAwq.dropUnderRouted(mc, spec, layer, active, stats, minTokens, skippedMappings,
                            underRouted));
                    progress.note(expertReports.getLast().fallback().size() + " of " + mc.moe().experts()
                            + " experts under " + minTokens + " tokens");
                }

                // 2. Scale search on the original weights.
                long tsearch = System.nanoTime();
                Map<String, float[]> original = new HashMap<>();
                for (String lin : fit) {
                    original.put(lin, w.weight(lin).clone());
                }
                List<ScalePlan> plans = searchScales(decoder, w, active, stats, cfg, AwqQuantizer.MAXQ, xs, ops, progress);
                tSearch += (System.nanoTime() - tsearch) / 1e9;

                // 3. Apply the scales; the consumers' sampled inputs become x / s.
                Map<String, float[]> scaledSamples = new HashMap<>();
                for (String lin : fit) {
                    scaledSamples.put(lin, stats.samples(lin));
                }
                Set<String> modifiedNames = new LinkedHashSet<>();
                for (ScalePlan p : plans) {
                    AwqApply.scale(w, spec, p);
                    for (String c : p.consumers()) {
                        scaledSamples.put(c, AwqApply.divideColumns(scaledSamples.get(c), stats.sampleCount(c), p.scales().length,
                                p.scales()));
                    }
                    modifiedNames.add(p.previous());
                }
                Map<String, float[]> scaledWeights = new HashMap<>();
                for (String lin : fit) {
                    scaledWeights.put(lin, w.weight(lin).clone());
                }

                // 4. Clip search on every quantized linear but Q and K.
                long tc = System.nanoTime();
                if (cfg.clip()) {
                    for (String lin : fit) {
                        Role role = roleOf(spec, lin);
                        if (role == Role.Q || role == Role.K) {
                            continue; // q·kᵀ makes the output error of q, k alone a poor guide (the references skip them)
                        }
                        if (underRouted.contains(MoeBlocks.expert(spec, lin)) || stats.sampleCount(lin) == 0) {
                            continue; // an under-routed expert: too few inputs to judge a clip by
                        }
                        int[] nk = w.shape(lin);
                        ClipPlan cp = ClipSearch.search(spec.layer(layer, lin), w.weight(lin), nk[0], nk[1],
                                scaledSamples.get(lin), stats.sampleCount(lin), gs, ops);
                        AwqApply.clip(w.weight(lin), cp);
                        clipPlans.add(cp);
                        clipReports.add(new ClipReport(cp.linear(), cp.meanFactor(), cp.clippedFraction(),
                                cp.errorBefore(), cp.errorAfter()));
                    }
                }
                tClip += (System.nanoTime() - tc) / 1e9;

                // 5. Round to nearest with zero points; report each linear's output error.
                long tq = System.nanoTime();
                for (String lin : compressible(spec, w)) {
                    String full = spec.layer(layer, lin);
                    int[] nk = w.shape(lin);
                    if (!fit.contains(lin)) {
                        layerReports.add(new LayerReport(full, nk[0], nk[1], "skipped", unfit.get(lin), null, null));
                        continue;
                    }
                    QuantizedLinear q = AwqQuantizer.quantize(full, w.weight(lin), nk[0], nk[1], gs, w.bias(lin));
                    quantized.put(full, q);
                    int Ts = stats.sampleCount(lin);
                    if (Ts == 0) { // an expert no sampled token reached
                        layerReports.add(new LayerReport(full, nk[0], nk[1], "quantized", null, null, null));
                        continue;
                    }
                    float[] X = stats.samples(lin);
                    double errRtn = outputError(X, Ts, original.get(lin),
                            AwqQuantizer.pseudoQuantize(original.get(lin), nk[0], nk[1], gs), nk[0], nk[1], ops);
                    double errAwq = outputError(scaledSamples.get(lin), Ts, scaledWeights.get(lin), q.dequantize(),
                            nk[0], nk[1], ops);
                    layerReports.add(new LayerReport(full, nk[0], nk[1], "quantized", null, errRtn, errAwq));
                }
                tQuant += (System.nanoTime() - tq) / 1e9;

                MoeAwq.routersScaled(mc, spec, layer, plans, modifiedNames);
                keepModified(spec, layer, w, modifiedNames, fit, modified);
                mappingReports.addAll(skippedMappings);
                for (ScalePlan p : plans) {
                    mappingReports.add(new MappingReport(layer, spec.layer(layer, p.previous()), full(spec, layer, p.consumers()),
                            p.inspect(), "searched", null, p.ratio(), p.loss(), p.lossAtZero(), p.losses()));
                }
                scalePlans.addAll(plans);
                xs = next;
            }
        }
        return new Result(quantized, modified, scalePlans, clipPlans, mappingReports, clipReports, layerReports,
                new Phases(tStats, tSearch, tClip, tQuant), (System.nanoTime() - t0) / 1e9, expertReports);
    }

    /**
     * AWQ's scale search and scaling alone, for one block, as another method's first step (GPTQ's
     * {@code --awq-scales}: the scales of AWQ, then GPTQ's solver on the scaled weights): the statistics
     * of block {@code w} over the inputs {@code xs}, the search of every mapping whose consumers are all
     * in {@code quantized} ({@link #searchScales}, AWQ's zero-point quantizer at codes 0..2^bits − 1),
     * and the plans applied to {@code w} in place ({@link AwqApply#scale}). No clipping, no quantization.
     * The function of the block in float is unchanged (the scales are folded into the previous norm or
     * linear); {@code xs} is not changed.
     *
     * @param quantized the block's linears (spec names) that the caller will quantize
     * @param modified  receives the float tensors the scaling changed that are not among {@code quantized}
     *                  (norms, previous linears left in float, previous linears' biases), by full name
     * @return the plans, one per searched mapping
     */
    public static List<ScalePlan> scaleBlock(Decoder decoder, BlockWeights w, float[][] xs, int groupSize, boolean duoScaling,
                                             int bits, Set<String> quantized, Map<String, float[]> modified, int batch,
                                             Ops ops) {
        ArchitectureSpec spec = decoder.spec();
        int layer = w.layer(), n = xs.length, C = decoder.config().hidden(), T = xs[0].length / C;
        Config cfg = new Config(groupSize, duoScaling, false, true, batch);
        List<Resolved> active = new ArrayList<>();
        Map<String, String> unfit = new LinkedHashMap<>();
        for (String l : compressible(spec, w)) {
            if (!quantized.contains(l)) {
                unfit.put(l, "not quantized");
            }
        }
        for (AwqMapping m : MoeAwq.mappings(decoder.config(), spec, layer)) {
            if (skipReason(spec, w, m, quantized, unfit) == null) {
                active.add(resolve(spec, w, m));
            }
        }
        if (active.isEmpty()) {
            return List.of();
        }
        try (Progress progress = new Progress("awq scales", 0, "seq", true)) {
            StatsTaps stats = statistics(decoder, w, active, Set.of(), xs, new float[n][],
                    Math.max(1, Math.min(batch, n)), ClipSearch.sampleStride((long) n * T), ops, progress);
            if (decoder.config().sparseLayer(layer)) {
                MoeAwq.dropUnderRouted(decoder.config(), spec, layer, active, stats, cfg.expertMinTokens().tokens((long) n * T),
                        new ArrayList<>(), new java.util.TreeSet<>());
            }
            List<ScalePlan> plans = searchScales(decoder, w, active, stats, cfg, (1 << bits) - 1, xs, ops, progress);
            Set<String> modifiedNames = new LinkedHashSet<>();
            for (ScalePlan p : plans) {
                AwqApply.scale(w, spec, p);
                modifiedNames.add(p.previous());
            }
            MoeAwq.routersScaled(decoder.config(), spec, layer, plans, modifiedNames);
            keepModified(spec, layer, w, modifiedNames, quantized, modified);
            return plans;
        }
    }

    /**
     * Pass one over the calibration sequences with the original block {@code w}: the statistics of
     * the mappings' inputs and the clip samples of the {@code fit} linears; the block's outputs go to
     * {@code next} (the inputs of the following block).
     */
    private static StatsTaps statistics(Decoder decoder, BlockWeights w, List<Resolved> active, Set<String> fit,
                                        float[][] xs, float[][] next, int batch, int stride, Ops ops, Progress progress) {
        int n = xs.length, C = decoder.config().hidden(), T = xs[0].length / C, layer = w.layer();
        Set<String> meanOf = new LinkedHashSet<>();
        Set<String> gramOf = new LinkedHashSet<>();
        for (Resolved r : active) {
            meanOf.add(r.input());
            if (r.module == Module.LINEAR) {
                gramOf.add(r.input());
            }
        }
        StatsTaps stats = new StatsTaps(layer, meanOf, gramOf, fit, stride, (long) n * T, ops);
        stats.routed = name -> MoeBlocks.expert(decoder.spec(), name) >= 0;
        for (int s0 = 0; s0 < n; s0 += batch) {
            int B = Math.min(batch, n - s0);
            float[] x = Calibration.gather(xs, s0, B, T * C);
            stats.offset = (long) s0 * T;
            decoder.block(w, x, B, T, null, stats);
            Calibration.requireFiniteActivations(x, layer);
            for (int b = 0; b < B; b++) {
                next[s0 + b] = java.util.Arrays.copyOfRange(x, b * T * C, (b + 1) * T * C);
            }
            progress.step(B);
        }
        return stats;
    }

    /**
     * The scale search of every active mapping of block {@code w} (original weights): the grid's
     * candidate scales from the statistics, each candidate's loss, the best one → one plan each.
     */
    private static List<ScalePlan> searchScales(Decoder decoder, BlockWeights w, List<Resolved> active, StatsTaps stats,
                                                Config cfg, int maxq, float[][] xs, Ops ops, Progress progress) {
        ArchitectureSpec spec = decoder.spec();
        int gs = cfg.groupSize(), layer = w.layer(), C = decoder.config().hidden(), T = xs[0].length / C;
        long tokens = (long) xs.length * T;
        double[] ratios = ScaleSearch.ratios(ScaleSearch.GRID);
        List<float[][]> candidates = new ArrayList<>(); // per active mapping: [ratio][K]
        for (Resolved r : active) {
            float[] xMean = stats.mean(r.input());
            float[] wMean = null;
            if (cfg.duoScaling()) {
                List<float[]> ws = new ArrayList<>();
                for (String c : r.consumers) {
                    ws.add(w.weight(c));
                }
                wMean = ScaleSearch.wMean(ws, r.K, gs);
            }
            float[][] cand = new float[ratios.length][];
            for (int i = 0; i < ratios.length; i++) {
                cand[i] = ScaleSearch.scales(xMean, wMean, ratios[i]);
            }
            candidates.add(cand);
        }
        double[][] losses = new double[active.size()][ratios.length];
        searchForwardMappings(decoder, w, spec, active, candidates, losses, xs, T, gs, maxq, progress);
        for (int a = 0; a < active.size(); a++) {
            Resolved r = active.get(a);
            if (r.module == Module.LINEAR) {
                String c = r.input();
                int[] nk = w.shape(c);
                float[] G = stats.gram(c);
                for (int i = 0; i < ratios.length; i++) {
                    float[] Wq = ScaleSearch.scaledQuantized(w.weight(c), nk[0], nk[1], candidates.get(a)[i], gs, maxq);
                    losses[a][i] = ScaleSearch.linearLoss(w.weight(c), Wq, nk[0], nk[1], G, tokens, ops);
                }
            }
        }
        List<ScalePlan> plans = new ArrayList<>();
        for (int a = 0; a < active.size(); a++) {
            Resolved r = active.get(a);
            int best = ScaleSearch.best(losses[a]);
            if (best < 0) {
                throw new ShrinkException(spec.layer(layer, r.mapping.previous()) + " -> " + r.consumers
                        + ": the AWQ loss is not a number for any ratio (activations or weights out of range?)");
            }
            plans.add(new ScalePlan(layer, r.mapping.previous(), r.consumers, r.mapping.inspect(), best, ratios,
                    losses[a], candidates.get(a)[best]));
        }
        return plans;
    }

    /**
     * The scale-search losses of the mappings whose inspected module is a sub-block (attention, MLP):
     * for chunks of sequences, the block's original forward captures the sub-blocks' inputs, the
     * original sub-block output is computed once, and R candidates at a time with their weights
     * stacked ({@link Decoder#attention}/{@link Decoder#mlp} with R sets). losses[a][i] gets
     * mean((candidate − original)²) over every token and output channel.
     */
    private static void searchForwardMappings(Decoder decoder, BlockWeights w, ArchitectureSpec spec, List<Resolved> active,
                                              List<float[][]> candidates, double[][] losses, float[][] xs, int T, int gs,
                                              int maxq, Progress progress) {
        List<Integer> idx = new ArrayList<>();
        for (int a = 0; a < active.size(); a++) {
            if (active.get(a).module != Module.LINEAR) {
                idx.add(a);
            }
        }
        if (idx.isEmpty()) {
            return;
        }
        ModelConfig mc = decoder.config();
        int C = mc.hidden(), n = xs.length, grid = losses[0].length;
        // Candidates per pass: bounded by the stacked weights' size.
        long stackPerRatio = 1, perTokenPerRatio = 1; // floats per candidate: stacked weights; activations per token
        for (int a : idx) {
            long floats = 0;
            for (String lin : stackedLinears(spec, w, active.get(a).module)) {
                int[] nk = w.shape(lin);
                floats += (long) nk[0] * nk[1];
            }
            stackPerRatio += floats;
            perTokenPerRatio = Math.max(perTokenPerRatio, active.get(a).module == Module.ATTENTION
                    ? 2L * mc.qDim() + 2L * mc.kvDim() + C : 2L * mc.intermediate() + C);
        }
        int perPass = (int) Math.max(1, Math.min(grid, STACK_FLOATS / stackPerRatio));
        if (mc.sparseLayer(w.layer()) && idx.stream().anyMatch(a -> active.get(a).module == Module.MLP)) {
            perPass = 1; // a mixture's MLP runs one candidate set at a time (its experts see routed rows)
        }
        double[][] sse = new double[active.size()][grid];
        Set<String> inputs = new LinkedHashSet<>();
        for (int a : idx) {
            inputs.add(active.get(a).input());
        }
        for (int r0 = 0; r0 < grid; r0 += perPass) {
            int R = Math.min(perPass, grid - r0);
            Map<Integer, BlockWeights> stacks = new HashMap<>();
            for (int a : idx) {
                stacks.put(a, stacked(w, spec, active.get(a), candidates.get(a), r0, R, gs, maxq));
            }
            int B = (int) Math.max(1, Math.min(n, CANDIDATE_FLOATS / ((long) T * R * perTokenPerRatio)));
            for (int s0 = 0; s0 < n; s0 += B) {
                int Bc = Math.min(B, n - s0);
                int M = Bc * T;
                float[] x = Calibration.gather(xs, s0, Bc, T * C);
                CaptureTaps capture = new CaptureTaps(w.layer(), inputs);
                decoder.block(w, x, Bc, T, null, capture);
                for (int a : idx) {
                    Resolved map = active.get(a);
                    float[] h = capture.get(map.input());
                    float[] ref, cand;
                    if (map.module == Module.ATTENTION) {
                        ref = decoder.attention(w, h, Bc, T, 1, null, Taps.NONE);
                        cand = decoder.attention(stacks.get(a), h, Bc, T, R, null, Taps.NONE);
                    } else {
                        ref = decoder.mlp(w, h, M, 1, Taps.NONE);
                        cand = decoder.mlp(stacks.get(a), h, M, R, Taps.NONE);
                    }
                    for (int m = 0; m < M; m++) {
                        for (int r = 0; r < R; r++) {
                            int cb = (m * R + r) * C, rb = m * C;
                            double e = 0;
                            for (int c = 0; c < C; c++) {
                                double d = (double) cand[cb + c] - ref[rb + c];
                                e += d * d;
                            }
                            sse[a][r0 + r] += e;
                        }
                    }
                }
                if (r0 == 0) {
                    progress.step(Bc);
                }
            }
        }
        double count = (double) n * T * C;
        for (int a : idx) {
            for (int i = 0; i < grid; i++) {
                losses[a][i] = sse[a][i] / count;
            }
        }
    }

    /** The linears whose weights the decoder's sub-block forward takes stacked (R sets): q, k, v or gate, up. */
    static List<String> stackedLinears(ArchitectureSpec spec, Module module) {
        EnumSet<Role> roles = module == Module.ATTENTION ? EnumSet.of(Role.Q, Role.K, Role.V) : EnumSet.of(Role.GATE, Role.UP);
        List<String> out = new ArrayList<>();
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (roles.contains(l.role())) {
                out.add(l.name());
            }
        }
        return out;
    }

    /** {@link #stackedLinears(ArchitectureSpec, Module)} of block w: a sparse block's every expert's and the shared expert's gate and up. */
    static List<String> stackedLinears(ArchitectureSpec spec, BlockWeights w, Module module) {
        EnumSet<Role> roles = module == Module.ATTENTION ? EnumSet.of(Role.Q, Role.K, Role.V) : EnumSet.of(Role.GATE, Role.UP);
        List<String> out = new ArrayList<>();
        for (String lin : compressible(spec, w)) {
            if (roles.contains(roleOf(spec, lin))) {
                out.add(lin);
            }
        }
        return out;
    }

    /** The linears of block w that AWQ may quantize, in load order: all but a mixture's router and shared expert's gate. */
    static List<String> compressible(ArchitectureSpec spec, BlockWeights w) {
        List<String> out = new ArrayList<>();
        for (String lin : w.linearNames()) {
            if (!MoeBlocks.neverCompressed(spec, lin)) {
                out.add(lin);
            }
        }
        return out;
    }

    /**
     * A block whose stacked linears hold candidates r0..r0+R−1: for a consumer, Q(W·diag(s_r))/s_r
     * for each r; for another stacked linear, R copies of its weight. Biases are repeated R times.
     */
    private static BlockWeights stacked(BlockWeights w, ArchitectureSpec spec, Resolved r, float[][] cand, int r0, int R,
                                        int gs, int maxq) {
        BlockWeights b = w.withNorms(w.inputNorm(), w.postAttentionNorm());
        List<String> stackedNames = stackedLinears(spec, w, r.module);
        for (String lin : w.linearNames()) {
            int[] nk = w.shape(lin);
            int N = nk[0], K = nk[1];
            if (!stackedNames.contains(lin)) {
                b.putLinear(lin, w.weight(lin), w.bias(lin), N, K);
                continue;
            }
            float[] W = w.weight(lin);
            float[] all = new float[R * N * K];
            for (int i = 0; i < R; i++) {
                float[] Wi = r.consumers.contains(lin) ? ScaleSearch.scaledQuantized(W, N, K, cand[r0 + i], gs, maxq) : W;
                System.arraycopy(Wi, 0, all, i * N * K, N * K);
            }
            float[] bias = w.bias(lin);
            float[] biases = null;
            if (bias != null) {
                biases = new float[R * N];
                for (int i = 0; i < R; i++) {
                    System.arraycopy(bias, 0, biases, i * N, N);
                }
            }
            b.putLinear(lin, all, biases, R * N, K);
        }
        return b;
    }

    /**
     * Sorts block {@code layer}'s linears into those AWQ can pack ({@code fit}, their weights checked
     * finite) and, with {@code skipUnfit}, those it cannot, with the reason ({@code unfit}); without it a
     * linear that cannot be packed is an error. Shared by the host loop and {@link DeviceAwq}.
     */
    static void sortLinears(ArchitectureSpec spec, BlockWeights w, int layer, int gs, boolean skipUnfit, Set<String> fit,
                            Map<String, String> unfit) {
        for (String name : compressible(spec, w)) {
            int[] nk = w.shape(name);
            String why = AwqQuantizer.unfitReason(nk[0], nk[1], gs);
            if (why == null) {
                Calibration.requireFiniteWeight(w.weight(name), spec.layer(layer, name) + ".weight");
                fit.add(name);
            } else if (skipUnfit) {
                unfit.put(name, why);
            } else {
                throw new ShrinkException(spec.layer(layer, name) + ": " + why
                        + "; AWQ cannot pack it (--skip-unfit leaves such layers unquantized)");
            }
        }
    }

    /**
     * Puts into {@code modified} the float tensors of block {@code layer} that the scaling changed and that are
     * not written as quantized linears: the norms that precede scaled linears, the weights of preceding linears
     * that are not quantized, and their biases. Shared by the host loop and {@link DeviceAwq}. A norm is
     * put as it is stored ({@link ArchitectureSpec#storedNorm}: Gemma's (1 + w) norms as the scaled
     * multiplier less 1), since the block holds the multiplier the forward uses.
     */
    static void keepModified(ArchitectureSpec spec, int layer, BlockWeights w, Set<String> modifiedNames, Set<String> fit,
                             Map<String, float[]> modified) {
        for (String prev : modifiedNames) {
            if ((prev + ".weight").equals(spec.inputNorm())) {
                modified.put(spec.layer(layer, spec.inputNorm()), spec.storedNorm(w.inputNorm()));
            } else if ((prev + ".weight").equals(spec.postAttentionNorm())) {
                modified.put(spec.layer(layer, spec.postAttentionNorm()), spec.storedNorm(w.postAttentionNorm()));
            } else {
                if (!fit.contains(prev)) {
                    modified.put(spec.layer(layer, prev) + ".weight", w.weight(prev));
                }
                if (w.bias(prev) != null) {
                    modified.put(spec.layer(layer, prev) + ".bias", w.bias(prev));
                }
            }
        }
    }

    /** Why a mapping is not searched in this block, or null when it is. */
    static String skipReason(ArchitectureSpec spec, BlockWeights w, AwqMapping m, Set<String> fit,
                                     Map<String, String> unfit) {
        int K = w.shape(m.consumers().get(0))[1];
        if (isLinear(spec, m.previous())) {
            int prevOut = w.shape(m.previous())[0];
            if (prevOut != K) {
                if (m.onlyWithoutGqa()) {
                    return m.previous() + "'s output (" + prevOut + ") differs from " + m.consumers().get(0)
                            + "'s input (" + K + "): grouped KV heads, no scaling between them";
                }
                throw new ShrinkException("AWQ mapping " + m.previous() + " -> " + m.consumers() + ": the previous output ("
                        + prevOut + ") does not match the consumers' input (" + K + ")");
            }
        }
        for (String c : m.consumers()) {
            if (!fit.contains(c)) {
                return c + " is not quantized (" + unfit.get(c) + ")";
            }
        }
        return null;
    }

    static Resolved resolve(ArchitectureSpec spec, BlockWeights w, AwqMapping m) {
        List<String> consumers = m.consumers();
        int K = w.shape(consumers.get(0))[1];
        for (String c : consumers) {
            if (w.shape(c)[1] != K) {
                throw new ShrinkException("AWQ mapping " + m.previous() + " -> " + consumers + ": the consumers' inputs differ in size");
            }
        }
        boolean prevIsNorm = (m.previous() + ".weight").equals(spec.inputNorm())
                || (m.previous() + ".weight").equals(spec.postAttentionNorm());
        if (!prevIsNorm && !isLinear(spec, m.previous())) {
            throw new ShrinkException("AWQ mapping " + m.previous() + " -> " + consumers
                    + ": the previous op is neither a norm nor a linear of the block");
        }
        Module module;
        if (isLinear(spec, m.inspect())) {
            if (!consumers.equals(List.of(m.inspect()))) {
                throw new ShrinkException("AWQ mapping " + m.previous() + " -> " + consumers + ": inspecting the linear "
                        + m.inspect() + " needs it to be the only consumer");
            }
            module = Module.LINEAR;
        } else {
            EnumSet<Role> roles = EnumSet.noneOf(Role.class);
            for (String c : consumers) {
                Role role = roleOf(spec, c);
                if (role == null) {
                    throw new ShrinkException("AWQ mapping consumer " + c + " is not a linear of the block");
                }
                roles.add(role);
            }
            if (EnumSet.of(Role.Q, Role.K, Role.V).containsAll(roles)) {
                module = Module.ATTENTION;
            } else if (EnumSet.of(Role.GATE, Role.UP).containsAll(roles)) {
                module = Module.MLP;
            } else {
                throw new ShrinkException("AWQ mapping " + m.previous() + " -> " + consumers + " inspecting " + m.inspect()
                        + ": consumers must be the attention's q/k/v or the MLP's gate/up");
            }
        }
        String input = consumers.get(0);
        if (module == Module.MLP && MoeBlocks.expert(spec, input) >= 0) {
            input = spec.moe().router(); // the experts' shared input: the MLP's normed input on every row
        }
        return new Resolved(m, module, consumers, K, input);
    }

    static boolean isLinear(ArchitectureSpec spec, String name) {
        return roleOf(spec, name) != null;
    }

    static Role roleOf(ArchitectureSpec spec, String name) {
        return MoeBlocks.role(spec, name);
    }

    static List<String> full(ArchitectureSpec spec, int layer, List<String> names) {
        List<String> out = new ArrayList<>();
        for (String s : names) {
            out.add(spec.layer(layer, s));
        }
        return out;
    }

    /** mean over (t, n) of (X·Wᵀ − X·Ŵᵀ)², X [T, K], W and Ŵ [N, K]. */
    static double outputError(float[] X, int T, float[] W, float[] Wq, int N, int K, Ops ops) {
        float[] dW = new float[N * K];
        for (int i = 0; i < dW.length; i++) {
            dW[i] = W[i] - Wq[i];
        }
        float[] Y = new float[T * N];
        ops.linear(X, T, K, dW, N, Y);
        double sum = 0;
        for (float v : Y) {
            sum += (double) v * v;
        }
        return sum / ((double) T * N);
    }

    /**
     * Pass-one statistics of one block's linears' inputs: Σ|x| per channel, Σ x·xᵀ (float32 GEMMs
     * per batch, summed in double), and the rows of the tokens the clip search samples (global token
     * index a multiple of the stride).
     */
    static final class StatsTaps implements Taps {
        private final int layer;
        private final Ops ops;
        private final int stride;
        private final int count;
        private final Map<String, double[]> absSum = new HashMap<>();
        private final Map<String, double[]> grams = new HashMap<>();
        private final Map<String, float[]> samples = new HashMap<>();
        private final long totalTokens;
        /** The global index of the first token of the next forward. */
        long offset;
        /**
         * Linears that see only some rows of a forward (a mixture's experts: their routed rows): sampled every
         * stride-th row of their own, up to the same count, rather than by global token index.
         */
        java.util.function.Predicate<String> routed = name -> false;
        private final Map<String, Long> rows = new HashMap<>();
        private final Map<String, Integer> sampled = new HashMap<>();

        StatsTaps(int layer, Set<String> meanOf, Set<String> gramOf, Set<String> sampleOf, int stride, long totalTokens,
                  Ops ops) {
            this.layer = layer;
            this.ops = ops;
            this.stride = stride;
            this.totalTokens = totalTokens;
            this.count = (int) ((totalTokens + stride - 1) / stride);
            for (String s : meanOf) {
                absSum.put(s, null);
            }
            for (String s : gramOf) {
                grams.put(s, null);
            }
            for (String s : sampleOf) {
                samples.put(s, null);
            }
        }

        @Override
        public void linearInput(int layer, String linear, float[] x, int M, int K) {
            if (layer != this.layer) {
                return;
            }
            long seen = rows.getOrDefault(linear, 0L);
            rows.put(linear, seen + M);
            if (absSum.containsKey(linear)) {
                double[] sum = absSum.computeIfAbsent(linear, k -> new double[K]);
                for (int m = 0; m < M; m++) {
                    int row = m * K;
                    for (int k = 0; k < K; k++) {
                        sum[k] += Math.abs(x[row + k]);
                    }
                }
            }
            if (grams.containsKey(linear)) {
                double[] G = grams.get(linear);
                if (G == null) {
                    grams.put(linear, G = new double[K * K]);
                }
                float[] part = new float[K * K];
                ops.gemm(true, false, K, K, M, 1f, x, 0, K, x, 0, K, 0f, part, 0, K);
                for (int i = 0; i < part.length; i++) {
                    G[i] += part[i];
                }
            }
            if (samples.containsKey(linear)) {
                float[] S = samples.get(linear);
                if (S == null) {
                    samples.put(linear, S = new float[count * K]);
                }
                if (routed.test(linear)) {
                    int at = sampled.getOrDefault(linear, 0);
                    long first = (seen + stride - 1) / stride * stride; // this linear's own row index
                    for (long g = first; g < seen + M && at < count; g += stride) {
                        System.arraycopy(x, (int) (g - seen) * K, S, at++ * K, K);
                    }
                    sampled.put(linear, at);
                    return;
                }
                long first = (offset + stride - 1) / stride * stride; // first sampled global index ≥ offset
                for (long g = first; g < offset + M; g += stride) {
                    System.arraycopy(x, (int) (g - offset) * K, S, (int) (g / stride) * K, K);
                }
            }
        }

        /** x_mean [K] = Σ|x| / tokens. */
        float[] mean(String linear) {
            double[] sum = absSum.get(linear);
            if (sum == null) {
                throw new IllegalStateException("no inputs seen for " + linear);
            }
            float[] m = new float[sum.length];
            for (int k = 0; k < m.length; k++) {
                m[k] = (float) (sum[k] / totalTokens);
            }
            return m;
        }

        /** Σ x·xᵀ [K, K] as float32. */
        float[] gram(String linear) {
            double[] G = grams.get(linear);
            if (G == null) {
                throw new IllegalStateException("no inputs seen for " + linear);
            }
            float[] out = new float[G.length];
            for (int i = 0; i < G.length; i++) {
                out[i] = (float) G[i];
            }
            return out;
        }

        /** The sampled rows [sampleCount, K]. */
        float[] samples(String linear) {
            float[] S = samples.get(linear);
            if (routed.test(linear)) { // an expert: the rows it was routed, maybe none
                return S == null ? new float[0] : java.util.Arrays.copyOf(S, sampleCount(linear) * (S.length / count));
            }
            if (S == null) {
                throw new IllegalStateException("no inputs seen for " + linear);
            }
            return S;
        }

        int sampleCount() {
            return count;
        }

        /** The sampled rows of {@code linear}: {@link #sampleCount()}, or fewer for a routed linear (its first rows hold them). */
        int sampleCount(String linear) {
            return routed.test(linear) ? sampled.getOrDefault(linear, 0) : count;
        }

        /** The rows {@code linear}'s input had in all (a mixture's expert: its routed tokens). */
        long rows(String linear) {
            return rows.getOrDefault(linear, 0L);
        }
    }

    /** Copies the inputs of chosen linears of one block (the arrays are only valid during the call). */
    static final class CaptureTaps implements Taps {
        private final int layer;
        private final Set<String> wanted;
        private final Map<String, float[]> captured = new HashMap<>();

        CaptureTaps(int layer, Set<String> wanted) {
            this.layer = layer;
            this.wanted = wanted;
        }

        @Override
        public void linearInput(int layer, String linear, float[] x, int M, int K) {
            if (layer == this.layer && wanted.contains(linear)) {
                captured.put(linear, java.util.Arrays.copyOf(x, M * K));
            }
        }

        float[] get(String linear) {
            float[] x = captured.get(linear);
            if (x == null) {
                throw new IllegalStateException("the forward did not show the input of " + linear);
            }
            return x;
        }
    }

    // ---- The stage as a function: model folder in, AWQ folder out (shared by `shrink awq` and the pipeline). ----

    /**
     * Runs AWQ on the model folder {@code model} and writes {@code outDir} (atomically, with
     * {@code shrink-report.json}): {@link #run} then {@link AwqCheckpoint#write}.
     *
     * @param export     AutoAWQ GEMM folder, or the dequantized ("fake") fp16 model
     * @param windows    calibration windows [n][T] token ids
     * @param reportHead the report's first entries (stage, tool, backend, source, and "calibration");
     *                   export, options, seconds, phases, mappings, clips and layers are added here
     * @throws ShrinkException when outDir is taken (without overwrite), no linear can be packed, or on
     *                         any error of the run or the writer (nothing is left behind then)
     */
    /**
     * Refuses, before the calibration runs (minutes on large models), an output folder whose disk
     * has not room for the result: 4-bit linears for GEMM (the dequantized model as stored for fake).
     */
    public static void checkSpace(ModelDir dir, java.nio.file.Path outDir, Config cfg, AwqCheckpoint.Export export) {
        dev.shrink.core.safetensors.ModelFolderWriter.checkSpace(outDir, dev.shrink.core.safetensors.ModelFolderWriter
                .estimateBytes(dir.weights(), dir.spec()::isLinearWeight,
                        export == AwqCheckpoint.Export.GEMM ? AwqQuantizer.BITS : 0, cfg.groupSize()));
    }

    public static Result compress(java.nio.file.Path model, java.nio.file.Path outDir, Config cfg,
                                  AwqCheckpoint.Export export, int[][] windows, Map<String, Object> reportHead,
                                  Ops ops, boolean quiet, boolean overwrite) {
        return compress(model, outDir, cfg, export, windows, reportHead, ops, quiet, overwrite, null);
    }

    /**
     * {@link #compress(java.nio.file.Path, java.nio.file.Path, Config, AwqCheckpoint.Export, int[][], Map, Ops, boolean, boolean)},
     * first rotating the model ({@link RotatedModel}, as {@code rotate} says; null: no rotation): AWQ
     * searches and quantizes the rotated weights, and the report gets "rotation".
     */
    public static Result compress(java.nio.file.Path model, java.nio.file.Path outDir, Config cfg,
                                  AwqCheckpoint.Export export, int[][] windows, Map<String, Object> reportHead,
                                  Ops ops, boolean quiet, boolean overwrite, RotatedModel.Settings rotate) {
        dev.shrink.core.safetensors.ModelFolderWriter.checkTarget(model, outDir, overwrite, "the AWQ model");
        try (ModelDir dir = ModelDir.open(model)) {
            checkSpace(dir, outDir, cfg, export);
            RotatedModel rotated = rotate == null ? null : RotatedModel.of(dir, rotate);
            Result r = run(dir, rotated != null ? rotated : dev.shrink.core.forward.FusedLinears.of(dir), windows, cfg, ops, quiet);
            if (r.quantized().isEmpty()) {
                throw new ShrinkException(model + ": no decoder linear can be packed with --w-group-size " + cfg.groupSize()
                        + " (" + r.layers().get(0).reason() + ")");
            }
            Map<String, Object> report = new LinkedHashMap<>(reportHead);
            report.remove("calibration");
            report.put("export", export.name().toLowerCase(java.util.Locale.ROOT));
            Map<String, Object> options = new LinkedHashMap<>();
            options.put("bits", AwqQuantizer.BITS);
            options.put("group_size", cfg.groupSize());
            options.put("zero_point", true);
            options.put("duo_scaling", cfg.duoScaling());
            options.put("grid", ScaleSearch.GRID);
            options.put("clip", cfg.clip());
            options.put("skip_unfit", cfg.skipUnfit());
            options.put("batch", cfg.batch());
            report.put("options", options);
            if (rotated != null) {
                report.put("rotation", rotated.report());
            }
            report.put("calibration", reportHead.get("calibration"));
            report.put("seconds", r.seconds());
            report.put("phases_seconds", r.phases());
            report.put("mappings", r.mappings());
            report.put("clips", r.clips());
            report.put("layers", r.layers());
            if (!r.experts().isEmpty()) {
                report.put("experts", dev.shrink.core.forward.MoeBlocks.reportEntry(cfg.expertMinTokens(),
                        "no up -> down scale search and no clip search: zero-point round-to-nearest", r.experts()));
            }
            AwqCheckpoint.write(dir, outDir, r.quantized(), r.modified(), cfg.groupSize(), export, report, overwrite,
                    AwqCheckpoint.DEFAULT_MAX_SHARD_BYTES, rotated);
            return r;
        }
    }
}
