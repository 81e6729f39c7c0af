package dev.shrink.cli;

import dev.shrink.calib.CalibSource;
import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.ops.Ops;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.ResidentModel;
import dev.shrink.eval.SpeedEstimate;
import dev.shrink.eval.WindowScorer;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.Speed;
import dev.shrink.eval.SpeedResult;
import java.util.Arrays;
import java.util.Locale;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {
            "Perplexity of a model on evaluation text, by the GPTQ/AWQ papers' protocol made exact:",
            "BOS once, non-overlapping windows of --seqlen tokens, the short tail dropped, each window",
            "its own forward pass. Every figure is printed with its dataset, seqlen, windows and tokens:",
            "compare perplexities only when those match."},
        footer = {"", "Examples:",
            "  shrink eval ../shared/models/stories260K-hf --dataset tinystories",
            "  shrink eval MODEL --dataset heldout --dataset wikitext2 --max-windows 40 --json",
            "  shrink eval GPTQ_DIR --device cuda --speed-only --speed-prompt 128 --speed-decode 128",
            "  shrink eval AWQ_DIR --dataset heldout --kv-cache int8      (or LMDeploy's --quant-policy 8)"})
final class EvalCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    HubOptions hub;

    @Mixin
    ModelOption modelArg;

    @Mixin
    KvCacheOptions kv;

    Path model;

    @Option(names = "--dataset", paramLabel = "NAME|FILE", defaultValue = "wikitext2", split = ",",
            description = "wikitext2, ptb, tinystories, heldout (from ../shared/datasets) or a UTF-8 text file; "
                    + "repeat or separate with commas for several. Default: ${DEFAULT-VALUE}.")
    List<String> datasets;

    @Option(names = "--seqlen", paramLabel = "N", description = "Window length (default: the model's max_position_embeddings, at most 2048).")
    Integer seqlen;

    @Option(names = "--max-windows", paramLabel = "N", defaultValue = "0",
            description = "Evaluate only the first N windows of each set (0 = all).")
    int maxWindows;

    @Option(names = {"-o", "--output"}, paramLabel = "FILE", description = "Also write the JSON results to FILE.")
    Path output;

    @Option(names = "--speed", description = "Also measure prefill and decode tokens/s at batch 1 (greedy, KV cache); "
            + "with --device cuda through the device-resident decoder (W4A16 GEMV for 4-bit GPTQ/AWQ folders).")
    boolean speed;

    @Option(names = "--speed-only", description = "Measure the speed (as --speed) and no perplexity.")
    boolean speedOnly;

    @Option(names = "--speed-prompt", paramLabel = "N", defaultValue = "128",
            description = "Prompt tokens of the speed run (from the first --dataset). Default: ${DEFAULT-VALUE}.")
    int speedPrompt;

    @Option(names = "--speed-decode", paramLabel = "N", defaultValue = "32",
            description = "Greedy decode steps of the speed run. Default: ${DEFAULT-VALUE}.")
    int speedDecode;

    @Option(names = "--speed-repeats", paramLabel = "N", defaultValue = "3",
            description = "Timed speed runs (median reported) after one warm-up. Default: ${DEFAULT-VALUE}.")
    int speedRepeats;

    @Override
    public Integer call() {
        model = hub.resolve(modelArg.required("eval"), common.quiet);
        if (maxWindows < 0) {
            throw new ShrinkException("--max-windows must be ≥ 0, got " + maxWindows);
        }
        if ((speed || speedOnly) && (speedPrompt < 1 || speedDecode < 1 || speedRepeats < 1)) {
            throw new ShrinkException("--speed-prompt, --speed-decode and --speed-repeats must be ≥ 1");
        }
        if (output != null) { // refused before the evaluation: a device, a folder, a link, a file of the model
            SafeFiles.checkFileTarget(output);
            List<Path> inputs = new ArrayList<>(List.of(model));
            datasets.forEach(d -> inputs.addAll(CalibSource.inputPaths(d)));
            SafeFiles.checkApart(output, inputs, "the results");
        }
        KvCacheType kvCache = kv.type();
        Ops ops = common.ops();
        List<PplResult> results = new ArrayList<>();
        SpeedResult speedResult = null;
        Map<String, Object> gpu = null;
        try (LoadedModel m = LoadedModel.open(model, ops)) {
            int T = seqlen != null ? seqlen : Math.min(m.dir().config().maxPositions(), 2048);
            if (T < 2) {
                throw new ShrinkException("--seqlen must be at least 2, got " + T);
            }
            CalibOptions.warnLongerThanPositions("--seqlen", T, m.dir().config(), spec.commandLine().getErr());
            if (speed || speedOnly) {
                int max = m.dir().config().maxPositions();
                if (speedPrompt + speedDecode > max) {
                    throw new ShrinkException("--speed-prompt + --speed-decode = " + (speedPrompt + speedDecode)
                            + " exceeds the model's max_position_embeddings " + max);
                }
                EvalText text = EvalText.load(datasets.get(0).strip());
                int[] ids = m.tokenStream(text.text());
                if (ids.length < speedPrompt) {
                    throw new ShrinkException(text.name() + ": " + ids.length + " tokens, fewer than --speed-prompt "
                            + speedPrompt);
                }
                speedResult = Speed.measure(model, ops, m::lm, kvCache, Arrays.copyOf(ids, speedPrompt), speedDecode,
                        speedRepeats);
                if (!common.json) {
                    spec.commandLine().getOut().println(String.format(Locale.ROOT,
                            "speed  prefill %.1f tok/s, decode %.1f tok/s (batch 1, prompt %d, %d decode steps, median of %d;"
                                    + " decode %.1f..%.1f; %s; %s)", speedResult.prefillTokensPerSecond(),
                            speedResult.decodeTokensPerSecond(), speedPrompt, speedDecode, speedRepeats,
                            speedResult.decodeMin(), speedResult.decodeMax(), speedResult.backend(), speedResult.path())
                            + kvNote(kvCache));
                    if (ops instanceof CudaOps cuda) {
                        double measured = speedResult.decodeTokensPerSecond();
                        SpeedEstimate.of(m.dir(), cuda.device().name(), kvCache, speedPrompt, speedDecode).ifPresent(
                                e -> spec.commandLine().getOut().println("       " + e.versus(measured)));
                    }
                }
            }
            List<String> sets = speedOnly ? List.of() : datasets;
            // on the cuda backend the model is resident on the GPU: weights uploaded once, the one forward
            // over device buffers, only the NLLs copied back (docs/FORWARD.md)
            ResidentModel resident = !sets.isEmpty() && ops instanceof CudaOps cuda
                    ? ResidentModel.load(m.dir(), cuda, kvCache, common.quiet) : null;
            try {
                // the host model only when there are windows to score: --speed-only must not load it
                WindowScorer scorer = resident != null || sets.isEmpty() ? resident
                        : WindowScorer.host(m.lm().withKvCache(kvCache));
                for (String d : sets) {
                    EvalText text = EvalText.load(d.strip());
                    int[] ids = m.tokenStream(text.text());
                    PplResult r = Perplexity.evaluate(scorer, text.name(), ids, T, maxWindows, common.quiet);
                    results.add(r);
                    if (!common.json) {
                        spec.commandLine().getOut().println(r.summary() + kvNote(kvCache));
                    }
                }
                if (resident != null) {
                    gpu = new LinkedHashMap<>();
                    gpu.put("weights", resident.weightsNote());
                    gpu.put("weight_bytes", resident.weightBytes());
                    gpu.put("load_seconds", resident.loadSeconds());
                    gpu.put("peak_bytes", resident.peakBytes());
                    if (!common.json) {
                        spec.commandLine().getOut().println(String.format(Locale.ROOT,
                                "gpu    weights %.2f GiB resident (%s), loaded in %.1f s; peak %.2f GiB allocated",
                                resident.weightBytes() / (double) (1L << 30), resident.weightsNote(),
                                resident.loadSeconds(), resident.peakBytes() / (double) (1L << 30)));
                    }
                }
            } finally {
                if (resident != null) {
                    resident.close();
                }
            }
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("model", model.toAbsolutePath().normalize().toString());
        doc.put("backend", ops.name());
        doc.put("kv_cache", kvCache.id());
        doc.put("results", results);
        if (speedResult != null) {
            doc.put("speed", speedResult);
        }
        if (gpu != null) {
            doc.put("gpu", gpu);
        }
        if (common.json) {
            spec.commandLine().getOut().println(Json.write(doc));
        }
        if (output != null) {
            Json.writeFile(output, doc);
        }
        return 0;
    }

    /** "  [KV cache int8]" after a figure measured through a quantized cache; nothing for fp16. */
    private static String kvNote(KvCacheType kvCache) {
        return kvCache.quantized() ? "  [KV cache " + kvCache.id() + "]" : "";
    }
}
