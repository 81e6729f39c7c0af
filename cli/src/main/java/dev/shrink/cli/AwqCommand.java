package dev.shrink.cli;

import dev.shrink.awq.AwqCheckpoint;
import dev.shrink.awq.AwqStage;
import dev.shrink.calib.CalibData;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.transform.RotatedModel;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "awq", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Quantize a model's decoder linears to 4 bits with AWQ (activation-aware",
            "weight quantization, Lin et al. 2023) and write an AutoAWQ GEMM folder that",
            "vLLM, transformers, LMDeploy and SGLang load. Block by block: calibration",
            "inputs give per-channel activation magnitudes; a grid of 20 ratios searches",
            "the scales s that protect salient channels (previous op / s, consumers'",
            "columns x s: exact in float); a clip search shrinks each group's range; then",
            "round-to-nearest with zero points. The original block's outputs feed the next."},
        footer = {"", "Examples:",
            "  shrink awq ../shared/models/fixture-llama-14m --work-dir /tmp/awq \\",
            "      --calib-tokens ../shared/golden/fixture-llama-14m.calib-c4-128x512.safetensors \\",
            "      --no-duo-scaling",
            "  shrink awq MODEL --calib-dataset ptb --calib-samples 128 \\",
            "      --calib-seqlen 1024 --w-bits 4 --w-group-size 128 --work-dir OUT",
            "  shrink awq MODEL --work-dir OUT --export fake      (dequantized fp16 model)"})
final class AwqCommand implements Callable<Integer> {
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

    @Option(names = "--w-bits", defaultValue = "4", paramLabel = "B", description = "Weight bits: AWQ GEMM holds 4 only. Default: ${DEFAULT-VALUE}.")
    int bits;

    @Option(names = "--w-group-size", defaultValue = "128", paramLabel = "G", description = "Input columns per scale and zero point: 32, 64, 128, ... or -1 (one per output channel). Default: ${DEFAULT-VALUE}.")
    int groupSize;

    @Option(names = "--no-duo-scaling", description = "Search s = x_mean^a (llm-awq's original grid) instead of AutoAWQ's default x_mean^a / w_mean^(1-a).")
    boolean noDuoScaling;

    @Option(names = "--no-clip", description = "Skip the clip search (scale search and round-to-nearest only).")
    boolean noClip;

    @Option(names = "--skip-unfit", description = "Accepted for older scripts; it is the default: linears AWQ cannot pack (in-features not divisible by the group size, out-features not by 8) stay in float, named in a warning and listed in the report.")
    boolean skipUnfit;

    @Option(names = "--search-scale", arity = "0..1", paramLabel = "BOOL", description = "LMDeploy's flag to search the scale ratio; accepted (with or without True/False) so its scripts run: Shrink's AWQ always searches the ratio grid.")
    boolean searchScale;

    @Option(names = "--dtype", defaultValue = "auto", paramLabel = "auto|float16", description = "LMDeploy's dtype of the unquantized weights and activations: an AWQ GEMM folder holds them in float16 (torch_dtype float16), so auto and float16 are the same; bfloat16 is refused. Default: ${DEFAULT-VALUE}.")
    String dtype;

    @Option(names = "--export", defaultValue = "gemm", paramLabel = "gemm|fake", description = "gemm: AutoAWQ's packed GEMM checkpoint; fake: the dequantized fp16 model with the scales applied. Default: ${DEFAULT-VALUE}.")
    String export;

    @Mixin
    CalibOptions calib;

    @Mixin
    RotateOptions rotation;

    @Option(names = "--calib-sampling", defaultValue = "blocks", paramLabel = "blocks|random", description = "blocks: AWQ's consecutive blocks of per-document tokens (when the text is too short for them, random windows instead, said on stdout and in the report); random: GPTQ/LMDeploy-style random windows of the joined text. Default: ${DEFAULT-VALUE}.")
    String calibSampling;

    @Mixin
    ExpertOptions experts;

    @Option(names = {"--batch", "--batch-size"}, defaultValue = "8", paramLabel = "N", description = "Calibration sequences per forward of the statistics pass. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Override
    public Integer call() {
        model = modelArg.required("awq");
        validate();
        RotatedModel.Settings rotate = rotation.settings();
        GptqCommand.checkWorkDir(workDir, overwrite, model, calib);
        model = hub.resolve(model, common.quiet);
        GptqCommand.checkWorkDir(workDir, overwrite, model, calib); // the resolved Hub snapshot is an input too
        AwqCheckpoint.Export exportKind = AwqCheckpoint.Export.valueOf(export.toUpperCase(Locale.ROOT));
        Ops ops = common.ops();
        PrintWriter out = spec.commandLine().getOut();
        AwqStage.Config cfg = new AwqStage.Config(groupSize, !noDuoScaling, !noClip, true, batch, experts.threshold());
        Calibration calibration;
        try (ModelDir dir = ModelDir.open(model); Tokenizer tok = dir.tokenizer()) {
            AwqStage.checkSpace(dir, workDir, cfg, exportKind); // before the calibration text is read and tokenized
            calibration = calibration(calib, calibSampling, tok, dir.config().bosTokenId(),
                    common.json ? spec.commandLine().getErr() : out);
            calib.warnLong(calibration.windows(), dir.config(), spec.commandLine().getErr());
        }
        int[][] windows = calibration.windows();
        calib.save(windows);
        Map<String, Object> head = CalibOptions.reportHead("awq", model, ops);
        head.put("calibration", calib.report(windows, calibration.sampling()));
        AwqStage.Result r = AwqStage.compress(model, workDir, cfg, exportKind, windows, head, ops, common.quiet, overwrite,
                rotate);
        Map<String, String> unfit = new LinkedHashMap<>();
        r.layers().stream().filter(l -> !l.status().equals("quantized")).forEach(l -> unfit.put(l.name(), l.reason()));
        GptqCommand.warnKeptInFloat(spec.commandLine().getErr(), unfit);
        if (common.json) {
            out.println(Json.write(Json.folderResult("awq", workDir)));
            return 0;
        }
        printSummary(out, r);
        out.printf(Locale.ROOT, "wrote %s (%s, %s, %d linears quantized, %d kept)%n", workDir,
                exportKind == AwqCheckpoint.Export.GEMM ? "AWQ GEMM" : "fake-quantized fp16",
                InspectCommand.human(GptqCommand.folderBytes(workDir)), r.quantized().size(),
                r.layers().size() - r.quantized().size());
        return 0;
    }

    /** The calibration windows and how they were drawn ("file", "blocks", "random", or the blocks' fallback). */
    record Calibration(int[][] windows, String sampling) {
    }

    /**
     * AWQ's calibration ({@link CalibData#draw}): a tokens file as it is; else {@code samples} blocks of
     * {@code seqlen} consecutive per-document tokens (AWQ's sampling), or random windows of the joined
     * text (GPTQ's and LMDeploy's) when asked or when the text holds too few blocks (said on {@code out}).
     */
    static Calibration calibration(CalibOptions c, String sampling, Tokenizer tok, Integer bos, PrintWriter out) {
        CalibData.Drawn d = CalibData.draw(c.spec(sampling), tok, bos);
        if (d.note() != null) {
            out.println("note: " + Main.oneLine(d.note()));
        }
        return new Calibration(d.windows(), d.sampling());
    }

    private void validate() {
        if (bits != 4) {
            throw new ShrinkException("--w-bits must be 4: AWQ GEMM checkpoints hold 4-bit weights only, got " + bits);
        }
        if (groupSize != -1 && (groupSize < 8 || Integer.bitCount(groupSize) != 1)) {
            throw new ShrinkException("--w-group-size must be -1 or a power of two ≥ 8 (32, 64, 128, ...), got " + groupSize);
        }
        if (!export.equalsIgnoreCase("gemm") && !export.equalsIgnoreCase("fake")) {
            throw new ShrinkException("--export must be gemm or fake, got '" + export + "'");
        }
        if (!calibSampling.equals("blocks") && !calibSampling.equals("random")) {
            throw new ShrinkException("--calib-sampling must be blocks or random, got '" + calibSampling + "'");
        }
        if (batch < 1) {
            throw new ShrinkException("--batch must be positive, got " + batch);
        }
        if (!dtype.equals("auto") && !dtype.equals("float16")) {
            throw new ShrinkException("--dtype " + dtype + ": an AWQ GEMM folder holds its unquantized weights and "
                    + "activations in float16; give --dtype auto or float16");
        }
        calib.validate();
    }

    private static void printSummary(PrintWriter out, AwqStage.Result r) {
        int w = 12;
        for (AwqStage.MappingReport m : r.mappings()) {
            w = Math.max(w, mappingName(m).length());
        }
        out.printf(Locale.ROOT, "%-" + w + "s  %-9s %5s  %11s  %11s%n", "scale mapping", "inspect", "ratio", "loss", "loss at 0");
        for (AwqStage.MappingReport m : r.mappings()) {
            if (m.status().equals("searched")) {
                out.printf(Locale.ROOT, "%-" + w + "s  %-9s %5.2f  %11.4e  %11.4e%n", mappingName(m), shortInspect(m.inspect()),
                        m.ratio(), m.loss(), m.lossAtZero());
            } else {
                out.printf(Locale.ROOT, "%-" + w + "s  skipped (%s)%n", mappingName(m), m.reason());
            }
        }
        Map<String, AwqStage.ClipReport> clips = new LinkedHashMap<>();
        r.clips().forEach(c -> clips.put(c.name(), c));
        int lw = r.layers().stream().mapToInt(l -> l.name().length()).max().orElse(10);
        out.printf(Locale.ROOT, "%-" + lw + "s  %5s x %-5s  %-9s %6s  %11s  %11s%n", "linear", "out", "in", "status", "clip",
                "err rtn", "err awq");
        for (AwqStage.LayerReport l : r.layers()) {
            if (l.status().equals("quantized")) {
                AwqStage.ClipReport c = clips.get(l.name());
                out.printf(Locale.ROOT, "%-" + lw + "s  %5d x %-5d  %-9s %6s  %11.4e  %11.4e%n", l.name(), l.N(), l.K(),
                        l.status(), c == null ? "-" : String.format(Locale.ROOT, "%.3f", c.meanFactor()), l.errorRtn(), l.errorAwq());
            } else {
                out.printf(Locale.ROOT, "%-" + lw + "s  %5d x %-5d  %-9s (%s)%n", l.name(), l.N(), l.K(), l.status(), l.reason());
            }
        }
        var p = r.phases();
        out.printf(Locale.ROOT, "total %.1f s: statistics %.1f s, scale search %.1f s, clip search %.1f s, quantize %.1f s%n",
                r.seconds(), p.statistics(), p.scaleSearch(), p.clipSearch(), p.quantize());
        out.println("clip: mean kept fraction of each group's max |w|; err: mean squared output error of a linear on the "
                + "sampled tokens, plain round-to-nearest vs AWQ");
    }

    private static String mappingName(AwqStage.MappingReport m) {
        StringBuilder sb = new StringBuilder(m.previous()).append(" -> ");
        for (int i = 0; i < m.consumers().size(); i++) {
            String c = m.consumers().get(i);
            sb.append(i == 0 ? c : c.substring(c.lastIndexOf('.') + 1));
            if (i + 1 < m.consumers().size()) {
                sb.append(',');
            }
        }
        return sb.toString();
    }

    private static String shortInspect(String inspect) {
        return inspect.length() > 9 ? inspect.substring(inspect.lastIndexOf('.') + 1) : inspect;
    }
}
