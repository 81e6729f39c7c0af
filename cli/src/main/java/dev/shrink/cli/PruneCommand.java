package dev.shrink.cli;

import dev.shrink.calib.CalibData;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.Version;
import dev.shrink.core.sparse.CompressedSparseCheckpoint;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.gptq.GptqCheckpoint;
import dev.shrink.gptq.GptqFormat;
import dev.shrink.gptq.GptqStage;
import dev.shrink.gptq.QuantScheme;
import dev.shrink.pipeline.SparseGpt;
import dev.shrink.prune.NamePattern;
import dev.shrink.prune.PruneStage;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "prune", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Prune a model's decoder linears (q, k, v, o, gate, up, down; never the",
            "embeddings, norms or lm_head) into a dense folder whose pruned weights are",
            "exact zeros in the source's dtype, which every loader reads. config.json",
            "records the sparsity under shrink.sparsity (method, pattern, scope, the zero",
            "fraction of each pruned linear); shrink-report.json lists every linear.",
            "  magnitude  prune the smallest |W|; --scope layer (one threshold per",
            "             linear), row (per output row) or global (one threshold for",
            "             all pruned linears). Needs no data.",
            "  wanda      prune the smallest |W_ij| x ||X_j|| per output row (Sun et al.",
            "             2023), X the linear's inputs on calibration text; block by",
            "             block, the pruned block feeding the next.",
            "  sparsegpt  GPTQ's solver pruning instead of rounding (Frantar & Alistarh",
            "             2023): masks by w^2 / Hinv[i,i]^2 per block of 128 columns, the",
            "             error spread over the columns not yet pruned. With --w-bits it",
            "             prunes and quantizes at once and writes a GPTQ folder.",
            "--sparsity R zeros floor(R x count) weights per comparison group; --pattern",
            "N:M keeps N of every M consecutive input weights of a row (2:4, 4:8).",
            "Of equal scores the earlier weight is kept (as torch.topk keeps it)."},
        footer = {"", "Examples:",
            "  shrink prune ../shared/models/fixture-llama-14m --work-dir /tmp/p24 \\",
            "      --method magnitude --pattern 2:4",
            "  shrink prune MODEL --work-dir OUT --method wanda --sparsity 0.5",
            "  shrink prune MODEL --work-dir OUT --method sparsegpt --pattern 2:4 --w-bits 4",
            "  shrink prune MODEL --work-dir OUT --method magnitude --pattern 2:4 \\",
            "      --save-format sparse-24-bitmask      (compressed-tensors, 2/3 of the bytes)",
            "  shrink prune MODEL --work-dir OUT --method wanda --pattern 2:4 \\",
            "      --calib-dataset wikitext2 --calib-samples 64 --calib-seqlen 1024",
            "  shrink prune MODEL --work-dir OUT --method magnitude --sparsity 0.6 \\",
            "      --scope global",
            "  shrink prune MODEL --work-dir OUT --method magnitude --pattern 4:8 \\",
            "      --ignore '*down_proj'",
            "  shrink prune MODEL --work-dir OUT --method wanda --sparsity 0.5 \\",
            "      --targets '*mlp*' --ignore 're:model\\.layers\\.(0|1)\\..*'"})
final class PruneCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    HubOptions hub;

    @Mixin
    ModelOption modelArg;

    Path model;

    @Option(names = "--work-dir", required = true, paramLabel = "OUT", description = "Output folder (appears only when complete).")
    Path workDir;

    @Option(names = "--overwrite", description = "Replace a non-empty --work-dir (once the new folder is complete).")
    boolean overwrite;

    @Option(names = "--method", required = true, paramLabel = "magnitude|wanda|sparsegpt", description = "magnitude (no data), wanda or sparsegpt (calibration text).")
    String method;

    @Option(names = "--sparsity", paramLabel = "R", description = "Unstructured: the fraction of weights set to zero, in [0, 1).")
    Double sparsity;

    @Option(names = "--pattern", paramLabel = "N:M", description = "Semi-structured: at most N non-zeros in every M consecutive input weights (2:4, 4:8).")
    String pattern;

    @Option(names = "--scope", paramLabel = "layer|row|global", description = "With --sparsity: where scores are compared. Default: layer for magnitude, row for wanda (global: magnitude only).")
    String scope;

    @Option(names = "--targets", paramLabel = "P[,P...]", description = "Prune only the decoder linears whose full name (model.layers.3.mlp.down_proj) matches: globs (* any characters), or one re:REGEX per option. Default: all.")
    List<String> targets;

    @Option(names = "--ignore", paramLabel = "P[,P...]", description = "Leave these decoder linears as they are (same patterns as --targets).")
    List<String> ignore;

    @Mixin
    CalibOptions calib;

    @Mixin
    ExpertOptions experts;

    @Option(names = {"--batch", "--batch-size"}, defaultValue = "8", paramLabel = "N", description = "Calibration sequences per forward (wanda, sparsegpt). Default: ${DEFAULT-VALUE}.")
    int batch;

    @Option(names = "--save-format", defaultValue = "dense", paramLabel = "FORMAT", description = "dense (exact zeros, loads everywhere), or compressed-tensors sparse-bitmask / sparse-24-bitmask (saves the bytes; transformers loads it through compressed-tensors). Default: ${DEFAULT-VALUE}.")
    String saveFormat;

    @Option(names = "--w-bits", paramLabel = "B", description = "sparsegpt only: also quantize (2, 3, 4 or 8 bits) and write a GPTQ folder.")
    Integer wBits;

    @Option(names = "--w-group-size", defaultValue = "128", paramLabel = "G", description = "sparsegpt with --w-bits: input columns per scale, or -1. Default: ${DEFAULT-VALUE}.")
    int wGroupSize;

    @Option(names = "--asym", description = "sparsegpt with --w-bits: a zero point per group (default symmetric).")
    boolean asym;

    @Option(names = "--damp", defaultValue = "0.01", paramLabel = "F", description = "sparsegpt: F x mean(diag H) added to the diagonal. Default: ${DEFAULT-VALUE}.")
    double damp;

    @Override
    public Integer call() {
        model = hub.resolve(modelArg.required("prune"), common.quiet);
        if (method.equals("sparsegpt")) {
            return sparseGpt();
        }
        PruneStage.Config cfg = config();
        GptqCommand.checkWorkDir(workDir, overwrite, model, calib);
        PrintWriter out = spec.commandLine().getOut();
        Ops ops = common.ops();
        try (ModelDir dir = ModelDir.open(model)) {
            PrunedCheckpoint.requireUnquantized(dir);
            WeightSource src = FusedLinears.of(dir);
            PruneStage.plan(dir, src, cfg); // bad targets or an N:M misfit: refused before calibration
            PruneStage.checkSpace(dir, workDir);
            int[][] windows = switch (cfg.method()) {
                case "magnitude" -> null;
                case "wanda" -> {
                    int[][] w;
                    try (Tokenizer tok = dir.tokenizer()) {
                        w = CalibData.windows(calib.spec("random"), tok, dir.config().bosTokenId());
                    }
                    calib.warnLong(w, dir.config(), spec.commandLine().getErr());
                    calib.save(w);
                    yield w;
                }
                default -> throw new IllegalStateException(cfg.method());
            };
            PruneStage.Result r = PruneStage.run(dir, src, windows, cfg, ops, common.quiet);
            Map<String, Object> report = CalibOptions.reportHead("prune", model, ops);
            report.putAll(PruneStage.report(r, cfg));
            report.put("calibration", windows == null ? null : calib.report(windows, "random"));
            if (saveFormat.equals("dense")) {
                PrunedCheckpoint.write(dir, workDir, r.weights(), r.record(), report, overwrite);
            } else {
                CompressedSparseCheckpoint.write(dir, workDir, r.weights(), r.weights().keySet(), saveFormat, report,
                        overwrite, CompressedSparseCheckpoint.DEFAULT_MAX_SHARD_BYTES, r.record());
            }
            if (common.json) {
                out.println(Json.write(Json.folderResult("prune", workDir)));
                return 0;
            }
            printSummary(out, r, cfg);
            out.printf(Locale.ROOT, "wrote %s (%s, %d linears pruned, %d kept)%n", workDir,
                    InspectCommand.human(GptqCommand.folderBytes(workDir)), r.totals().linearsPruned(),
                    r.totals().linearsKept());
        }
        return 0;
    }

    /** SparseGPT: GPTQ's machinery, selecting linears with the pruning rules; dense or (with --w-bits) GPTQ output. */
    private int sparseGpt() {
        SparsityPattern p = pattern();
        checkSaveFormat();
        if (scope != null) {
            throw new ShrinkException("--scope does not apply to sparsegpt: it chooses its mask per block of 128 columns");
        }
        if (wBits != null && !saveFormat.equals("dense")) {
            throw new ShrinkException("--save-format " + saveFormat + " holds float weights; with --w-bits the output is a GPTQ folder");
        }
        if (!(damp > 0) || damp >= 1) {
            throw new ShrinkException("--damp must be in (0, 1), got " + damp);
        }
        QuantScheme scheme = null;
        if (wBits != null) {
            if (wBits != 2 && wBits != 3 && wBits != 4 && wBits != 8) {
                throw new ShrinkException("--w-bits must be 2, 3, 4 or 8, got " + wBits);
            }
            if (wGroupSize != -1 && (wGroupSize < 8 || Integer.bitCount(wGroupSize) != 1)) {
                throw new ShrinkException("--w-group-size must be -1 or a power of two ≥ 8, got " + wGroupSize);
            }
            scheme = QuantScheme.of(wBits, wGroupSize, !asym);
        }
        calib.validate();
        List<String> t = patterns(targets, "--targets"), i = patterns(ignore, "--ignore");
        GptqCommand.checkWorkDir(workDir, overwrite, model, calib);
        PrintWriter out = spec.commandLine().getOut();
        Ops ops = common.ops();
        try (ModelDir dir = ModelDir.open(model)) {
            java.util.Set<String> only = SparseGpt.targets(dir, p, t, i); // refused before calibration
            PruneStage.checkSpace(dir, workDir);
            int[][] windows;
            try (Tokenizer tok = dir.tokenizer()) {
                windows = CalibData.windows(calib.spec("random"), tok, dir.config().bosTokenId());
            }
            calib.warnLong(windows, dir.config(), spec.commandLine().getErr());
            calib.save(windows);
            GptqStage.Config cfg = SparseGpt.config(only, p, scheme, damp, 128, batch)
                    .withExpertMinTokens(experts.threshold());
            GptqStage.Result r = GptqStage.run(dir, FusedLinears.of(dir), windows, cfg, ops, common.quiet);
            Map<String, Object> report = CalibOptions.reportHead("prune", model, ops);
            report.put("options", cfg);
            report.put("calibration", calib.report(windows, "random"));
            report.put("seconds", r.seconds());
            report.put("layers", r.layers());
            if (!r.experts().isEmpty()) {
                report.put("experts", GptqStage.expertsReport(cfg, r));
            }
            SparsityRecord record = GptqStage.sparsity(r, cfg);
            if (scheme != null) {
                GptqCheckpoint.write(dir, workDir, r.quantized(), new GptqFormat(scheme.bits(), scheme.groupSize(),
                        scheme.sym(), false, false, true, damp, Version.quantizer()), report, overwrite,
                        GptqCheckpoint.DEFAULT_MAX_SHARD_BYTES, record);
            } else if (saveFormat.equals("dense")) {
                PrunedCheckpoint.write(dir, workDir, r.pruned(), record, report, overwrite);
            } else {
                CompressedSparseCheckpoint.write(dir, workDir, r.pruned(), r.pruned().keySet(), saveFormat, report,
                        overwrite, CompressedSparseCheckpoint.DEFAULT_MAX_SHARD_BYTES, record);
            }
            if (common.json) {
                out.println(Json.write(Json.folderResult("prune", workDir)));
                return 0;
            }
            long zeros = 0, weights = 0;
            int w = r.layers().stream().mapToInt(l -> l.name().length()).max().orElse(10);
            out.printf(Locale.ROOT, "%-" + w + "s  %5s x %-5s  %10s  %7s  %s%n", "linear", "out", "in", "zeros", "ratio", "status");
            for (GptqStage.LayerReport l : r.layers()) {
                double ratio = (double) l.zeros() / ((long) l.N() * l.K());
                out.printf(Locale.ROOT, "%-" + w + "s  %5d x %-5d  %10d  %7.4f  %s%n", l.name(), l.N(), l.K(), l.zeros(), ratio,
                        l.reason() == null ? l.status() : l.status() + " (" + l.reason() + ")");
                if (l.reason() == null) {
                    zeros += l.zeros();
                    weights += (long) l.N() * l.K();
                }
            }
            out.printf(Locale.ROOT, "sparsegpt %s%s: %d of %d weights in the processed linears are zero (%.4f); %.1f s%n",
                    p.label().equals("unstructured") ? "sparsity " + sparsity : p.label(),
                    scheme == null ? "" : " + " + scheme.bits() + "-bit GPTQ", zeros, weights, (double) zeros / weights, r.seconds());
            out.printf(Locale.ROOT, "wrote %s (%s)%n", workDir, InspectCommand.human(GptqCommand.folderBytes(workDir)));
        }
        return 0;
    }

    private void checkSaveFormat() {
        if (!List.of("dense", "sparse-bitmask", "sparse-24-bitmask").contains(saveFormat)) {
            throw new ShrinkException("--save-format must be dense, sparse-bitmask or sparse-24-bitmask, got '" + saveFormat + "'");
        }
    }

    /** --sparsity R or --pattern N:M, exactly one. */
    private SparsityPattern pattern() {
        if ((sparsity == null) == (pattern == null)) {
            throw new ShrinkException(sparsity == null
                    ? "give the sparsity: --sparsity R (unstructured) or --pattern N:M (e.g. 2:4)"
                    : "--sparsity and --pattern exclude each other: give one");
        }
        if (sparsity != null) {
            if (!(sparsity >= 0 && sparsity < 1)) {
                throw new ShrinkException("--sparsity must be in [0, 1) (the fraction of weights set to zero), got " + sparsity);
            }
            return new SparsityPattern.Unstructured(sparsity);
        }
        try {
            return SparsityPattern.parse(pattern);
        } catch (ShrinkException e) {
            throw new ShrinkException("--pattern: " + e.getMessage());
        }
    }

    private static List<String> patterns(List<String> values, String option) {
        try {
            return NamePattern.split(values);
        } catch (ShrinkException e) {
            throw new ShrinkException(option + ": " + e.getMessage());
        }
    }

    /** The options as a stage config, every bad combination refused with the option's name. */
    private PruneStage.Config config() {
        switch (method) {
            case "magnitude", "wanda" -> {
            }
            default -> throw new ShrinkException("--method must be magnitude, wanda or sparsegpt, got '" + method + "'");
        }
        if (wBits != null) {
            throw new ShrinkException("--w-bits goes with --method sparsegpt (joint pruning and quantization); "
                    + "to quantize a " + method + "-pruned model, run shrink gptq or awq on it");
        }
        checkSaveFormat();
        if ((sparsity == null) == (pattern == null)) {
            throw new ShrinkException(sparsity == null
                    ? "give the sparsity: --sparsity R (unstructured) or --pattern N:M (e.g. 2:4)"
                    : "--sparsity and --pattern exclude each other: give one");
        }
        SparsityPattern p;
        if (sparsity != null) {
            if (!(sparsity >= 0 && sparsity < 1)) {
                throw new ShrinkException("--sparsity must be in [0, 1) (the fraction of weights set to zero), got " + sparsity);
            }
            p = new SparsityPattern.Unstructured(sparsity);
            if (scope != null && !List.of("layer", "row", "global").contains(scope)) {
                throw new ShrinkException("--scope must be layer, row or global, got '" + scope + "'");
            }
            if ("global".equals(scope) && method.equals("wanda")) {
                throw new ShrinkException("--scope global works with --method magnitude only: Wanda prunes block by block "
                        + "and compares scores per row (default) or per layer");
            }
        } else {
            try {
                p = SparsityPattern.parse(pattern);
            } catch (ShrinkException e) {
                throw new ShrinkException("--pattern: " + e.getMessage());
            }
            if (scope != null) {
                throw new ShrinkException("--scope does not apply to --pattern " + pattern
                        + ": N:M compares the weights of each group of " + ((SparsityPattern.NofM) p).m());
            }
        }
        if (batch < 1) {
            throw new ShrinkException("--batch must be positive, got " + batch);
        }
        if (method.equals("wanda")) {
            calib.validate();
        }
        List<String> t, i;
        try {
            t = NamePattern.split(targets);
        } catch (ShrinkException e) {
            throw new ShrinkException("--targets: " + e.getMessage());
        }
        try {
            i = NamePattern.split(ignore);
        } catch (ShrinkException e) {
            throw new ShrinkException("--ignore: " + e.getMessage());
        }
        return new PruneStage.Config(method, p, scope, t, i, batch, experts.threshold());
    }

    private static void printSummary(PrintWriter out, PruneStage.Result r, PruneStage.Config cfg) {
        int w = r.layers().stream().mapToInt(l -> l.name().length()).max().orElse(10);
        out.printf(Locale.ROOT, "%-" + w + "s  %5s x %-5s  %10s  %7s  %s%n", "linear", "out", "in", "zeros", "ratio", "status");
        for (PruneStage.LayerReport l : r.layers()) {
            out.printf(Locale.ROOT, "%-" + w + "s  %5d x %-5d  %10d  %7.4f  %s%n", l.name(), l.N(), l.K(), l.zeros(),
                    l.ratio(), l.reason() == null ? l.status() : l.status() + " (" + l.reason() + ")");
        }
        PruneStage.Totals t = r.totals();
        out.printf(Locale.ROOT, "%s %s%s: %d of %d weights in %d pruned linears are zero (%.4f); %.4f of all %d parameters; %.1f s%n",
                cfg.method(), cfg.pattern() instanceof SparsityPattern.Unstructured u
                        ? java.math.BigDecimal.valueOf(u.ratio()).stripTrailingZeros().toPlainString() : cfg.pattern().label(),
                cfg.scope() == null ? "" : " (scope " + cfg.scope() + ")",
                t.linearZeros(), t.linearWeights(), t.linearsPruned(), t.linearRatio(), t.parameterRatio(),
                t.parameters(), r.seconds());
    }
}
