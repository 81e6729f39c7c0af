package dev.shrink.cli;

import dev.shrink.calib.CalibData;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.Version;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.transform.RotatedModel;
import dev.shrink.gptq.GptqStage;
import dev.shrink.gptq.QuantScheme;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "gptq", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Quantize a model's decoder linears with GPTQ and write a GPTQ folder that transformers",
            "(gptqmodel), vLLM and LMDeploy load. Block by block: calibration inputs are run through",
            "each block, the Hessian of every linear's inputs is gathered, the weights are quantized",
            "column by column with error feedback, and the quantized block feeds the next.",
            "Symmetric 4/8-bit output is written as checkpoint_format 'gptq' (v1), the rest as 'gptq_v2'.",
            "Layers whose shape cannot be packed keep their dtype and are listed in the report."},
        footer = {"", "Examples:",
            "  shrink gptq ../shared/models/fixture-llama-14m --work-dir /tmp/q \\",
            "      --calib-tokens ../shared/golden/fixture-llama-14m.calib-c4-128x512.safetensors",
            "  shrink gptq MODEL --work-dir OUT --w-bits 4 --w-group-size 128 --act-order --calib-dataset c4",
            "  shrink gptq MODEL --work-dir OUT --method rtn          (round-to-nearest baseline)"})
final class GptqCommand implements Callable<Integer> {
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

    @Option(names = "--method", defaultValue = "gptq", paramLabel = "gptq|rtn", description = "gptq, or rtn (round-to-nearest, no calibration). Default: ${DEFAULT-VALUE}.")
    String method;

    @Option(names = "--w-bits", defaultValue = "4", paramLabel = "B", description = "2, 3, 4 or 8. Default: ${DEFAULT-VALUE}.")
    int bits;

    @Option(names = "--w-group-size", defaultValue = "128", paramLabel = "G", description = "Input columns per scale: 32, 64, 128, ... or -1 (per output channel). Default: ${DEFAULT-VALUE}.")
    int groupSize;

    @ArgGroup(exclusive = true)
    Symmetry symmetry;

    static final class Symmetry {
        @Option(names = "--sym", description = "Symmetric (the default): zero point fixed at 2^(b-1).")
        boolean sym;

        @Option(names = "--asym", description = "Asymmetric: a zero point per group.")
        boolean asym;
    }

    @Option(names = "--act-order", description = "Quantize columns by decreasing Hessian diagonal (desc_act).")
    boolean actOrder;

    @Option(names = "--static-groups", description = "With --act-order: group parameters fixed on the original weights.")
    boolean staticGroups;

    @Option(names = "--no-true-sequential", negatable = false, description = "Quantize all linears of a block from one pass (default: {k,v,q} -> {o} -> {up,gate} -> {down}).")
    boolean noTrueSequential;

    @Option(names = "--damp", defaultValue = "0.01", paramLabel = "F", description = "Dampening: F x mean(diag H) added to the diagonal; raised automatically when Cholesky fails. Default: ${DEFAULT-VALUE}.")
    double damp;

    @Option(names = "--mse", description = "Search a range-shrink factor per group minimising the quantization error (clip search).")
    boolean mse;

    @Option(names = "--awq-scales", description = "First scale each block's input channels as AWQ does (scale search, folded into the previous norm or linear), then quantize the scaled weights with GPTQ.")
    boolean awqScales;

    @Option(names = "--gptaq", description = "GPTAQ's asymmetric calibration: each linear's target is the float model's output (W·X_fp), not W·X of the quantized model's inputs.")
    boolean gptaq;

    @Option(names = "--block-size", defaultValue = "128", paramLabel = "N", description = "Columns per lazy-update block. Default: ${DEFAULT-VALUE}.")
    int blockSize;

    @Mixin
    CalibOptions calib;

    @Mixin
    RotateOptions rotation;

    @Mixin
    ExpertOptions experts;

    @Option(names = {"--batch", "--batch-size"}, defaultValue = "8", paramLabel = "N", description = "Calibration sequences per forward. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Override
    public Integer call() {
        model = modelArg.required("gptq");
        validate();
        RotatedModel.Settings rotate = rotation.settings();
        checkWorkDir(workDir, overwrite, model, calib);
        model = hub.resolve(model, common.quiet);
        checkWorkDir(workDir, overwrite, model, calib); // the resolved Hub snapshot is an input too
        Ops ops = common.ops();
        PrintWriter out = spec.commandLine().getOut();
        boolean sym = symmetry == null || !symmetry.asym;
        QuantScheme scheme = QuantScheme.of(bits, groupSize, sym).withMse(mse);
        GptqStage.Config cfg = new GptqStage.Config(method, scheme, actOrder, staticGroups, !noTrueSequential,
                damp, blockSize, batch).withMethods(awqScales, gptaq).withExpertMinTokens(experts.threshold());
        try (ModelDir dir = ModelDir.open(model)) {
            GptqStage.checkSpace(dir, workDir, cfg); // before the calibration text is read and tokenized
        }
        int[][] windows;
        boolean drawn = !(method.equals("rtn") && calib.tokens == null);
        if (!drawn) {
            windows = new int[][] {{0}}; // RTN needs no calibration
        } else {
            try (ModelDir dir = ModelDir.open(model); Tokenizer tok = dir.tokenizer()) {
                windows = CalibData.windows(calib.spec("random"), tok, dir.config().bosTokenId());
                calib.warnLong(windows, dir.config(), spec.commandLine().getErr());
            }
            calib.save(windows);
        }
        Map<String, Object> head = CalibOptions.reportHead("gptq", model, ops);
        head.put("calibration", drawn ? calib.report(windows, "random") : null);
        GptqStage.Result r = GptqStage.compress(model, workDir, cfg, windows, head, Version.quantizer(), ops,
                common.quiet, overwrite, rotate);
        Map<String, String> unfit = new LinkedHashMap<>();
        r.layers().stream().filter(l -> l.status().equals("skipped") && !"not targeted".equals(l.reason()))
                .forEach(l -> unfit.put(l.name(), l.reason()));
        warnKeptInFloat(spec.commandLine().getErr(), unfit);
        if (common.json) {
            out.println(Json.write(Json.folderResult("gptq", workDir)));
            return 0;
        }
        printSummary(out, r);
        out.printf(Locale.ROOT, "wrote %s (%s, %d linears quantized, %d kept)%n", workDir,
                InspectCommand.human(folderBytes(workDir)), r.quantized().size(), r.layers().size() - r.quantized().size());
        return 0;
    }

    private void validate() {
        if (!method.equals("gptq") && !method.equals("rtn")) {
            throw new ShrinkException("--method must be gptq or rtn, got '" + method + "'");
        }
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new ShrinkException("--w-bits must be 2, 3, 4 or 8, got " + bits);
        }
        if (groupSize != -1 && (groupSize < 8 || Integer.bitCount(groupSize) != 1)) {
            throw new ShrinkException("--w-group-size must be -1 or a power of two ≥ 8 (32, 64, 128, ...), got " + groupSize);
        }
        if (!(damp > 0) || damp >= 1) {
            throw new ShrinkException("--damp must be in (0, 1), got " + damp);
        }
        if ((awqScales || gptaq) && !method.equals("gptq")) {
            throw new ShrinkException((awqScales ? "--awq-scales" : "--gptaq") + " goes with --method gptq (it needs calibration), not " + method);
        }
        if (staticGroups && !actOrder) {
            throw new ShrinkException("--static-groups only changes anything with --act-order");
        }
        calib.validate();
        if (blockSize < 1 || batch < 1) {
            throw new ShrinkException("--block-size and --batch must be positive");
        }
    }

    /**
     * Refuse early, before minutes of work: an output folder that is, holds or lies inside an input
     * (the model, calibration files; real paths compared), that holds something (without overwrite),
     * or a --save-calib-tokens file that cannot be written safely. Repairs first what a killed earlier
     * run left at the output ({@link SafeFiles#recover}).
     */
    static void checkWorkDir(Path dir, boolean overwrite, Path model, CalibOptions calib) {
        List<Path> inputs = new ArrayList<>();
        inputs.add(model);
        inputs.addAll(calib.inputs());
        SafeFiles.checkApart(dir, inputs, "the output");
        calib.checkSave(model);
        SafeFiles.recover(dir);
        if (Files.isRegularFile(dir)) {
            throw ShrinkException.at(dir, "--work-dir is a file");
        }
        if (Files.isDirectory(dir) && !overwrite) {
            try (Stream<Path> s = Files.list(dir)) {
                if (s.findAny().isPresent()) {
                    throw ShrinkException.at(dir, "--work-dir exists and is not empty (pass --overwrite to replace it)");
                }
            } catch (IOException e) {
                throw ShrinkException.at(dir, "cannot read --work-dir: " + e.getMessage(), e);
            }
        }
    }

    /**
     * One warning line naming the linears that stay in float because they cannot be grouped or packed
     * as asked (name → reason; GPTQ and AWQ both keep them, list them in shrink-report.json and exclude
     * them in the folder's quantization_config); nothing when there are none.
     */
    static void warnKeptInFloat(PrintWriter err, Map<String, String> reasonByName) {
        if (reasonByName.isEmpty()) {
            return;
        }
        Map<String, List<String>> byReason = new LinkedHashMap<>();
        reasonByName.forEach((name, why) -> byReason.computeIfAbsent(why, k -> new ArrayList<>()).add(name));
        List<String> parts = new ArrayList<>();
        byReason.forEach((why, names) -> parts.add(String.join(", ", names) + " (" + why + ")"));
        err.println("shrink: warning: " + reasonByName.size() + " linear" + (reasonByName.size() == 1 ? "" : "s")
                + " kept in float, not quantized (listed in shrink-report.json): " + String.join("; ", parts));
        err.flush();
    }

    private static void printSummary(PrintWriter out, GptqStage.Result r) {
        int w = r.layers().stream().mapToInt(l -> l.name().length()).max().orElse(10);
        out.printf(Locale.ROOT, "%-" + w + "s  %5s x %-5s  %-9s %12s  %6s  %7s%n", "linear", "out", "in", "status", "loss", "damp", "seconds");
        for (GptqStage.LayerReport l : r.layers()) {
            if (l.status().equals("quantized")) {
                out.printf(Locale.ROOT, "%-" + w + "s  %5d x %-5d  %-9s %12.4f  %6.3f%s %7.2f%n", l.name(), l.N(), l.K(),
                        l.status(), l.loss(), l.damp(), l.dampRaised() ? "!" : " ", l.seconds());
            } else {
                out.printf(Locale.ROOT, "%-" + w + "s  %5d x %-5d  %-9s (%s)%n", l.name(), l.N(), l.K(), l.status(), l.reason());
            }
        }
        var p = r.phases();
        out.printf(Locale.ROOT, "total %.1f s: calibration forward %.1f s, Hessians %.1f s, Cholesky/inverse %.1f s, column loop %.1f s%n",
                r.seconds(), p.forward(), p.hessian(), p.cholesky(), p.columns());
        for (var b : r.experts()) {
            if (!b.fallback().isEmpty()) {
                out.printf(Locale.ROOT, "block %d: experts %s got fewer than %d calibration tokens: Hessians of every token%n",
                        b.layer(), b.fallback(), b.threshold());
            }
        }
        if (r.layers().stream().anyMatch(GptqStage.LayerReport::dampRaised)) {
            out.println("! damp was raised for these layers because Cholesky failed at the requested value");
        }
    }

    static long folderBytes(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile).mapToLong(p -> {
                try {
                    return Files.size(p);
                } catch (IOException e) {
                    return 0;
                }
            }).sum();
        } catch (IOException e) {
            return 0;
        }
    }
}
