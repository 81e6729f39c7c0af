package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.pipeline.Compare;
import dev.shrink.pipeline.CompareReport;
import dev.shrink.pipeline.Gate;
import dev.shrink.pipeline.Recipe;
import dev.shrink.pipeline.RecipeParser;
import dev.shrink.pipeline.ReportJson;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "compare", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Run several compression pipelines on one model and compare them in one report: size,",
            "bits per weight, perplexity per set, KL divergence from the baseline, prefill and decode",
            "tokens/s, peak memory, compression time, greedy continuations side by side.",
            "Writes report.json, report.md and report.html (plots, Pareto front) into the work dir.",
            "Every stage's output model is cached under WORK/stages/<content key>: a prefix shared by",
            "several pipelines runs once, and an interrupted compare resumes where it stopped;",
            "measurements are cached under WORK/results/. Delete WORK to start afresh.",
            "",
            "With --baseline OLD/report.json it is also CI's regression gate: each result is compared",
            "with the one of the same name in the old report, one line per failing metric.",
            "Exit codes: 0 done (gate passed); 2 bad input (recipe, options, model) or a pipeline",
            "failed; 3 the gate found a regression."},
        footer = {"", "Recipe (one YAML document, no anchors or aliases; paths relative to the recipe file;",
            "an unknown key is an error):",
            "  model: ../../shared/models/fixture-llama-14m",
            "  calibration: {dataset: c4, samples: 16, seqlen: 512, seed: 0}   # every stage's default",
            "  evaluation:",
            "    datasets: [heldout]            # wikitext2, ptb, tinystories, heldout or a text file",
            "    seqlen: 512",
            "    max_windows: 20                # the first N windows of each set (0: all)",
            "    kl: {dataset: heldout, windows: 4}",
            "    prompts: [\"Once upon a time\"]",
            "    max_new_tokens: 24",
            "    speed: {prefill_tokens: 128, decode_tokens: 128, repeats: 5}",
            "  baseline: true",
            "  pipelines:",
            "    - {name: rtn-w4, stages: [{gptq: {method: rtn, bits: 4, group_size: 128}}]}",
            "    - {name: gptq-w4, stages: [{gptq: {bits: 4, group_size: 128}}]}",
            "    - {name: awq-w4, stages: [{awq: {group_size: 128, calibration: {seqlen: 256}}}]}",
            "    - name: prune24-gptq-w4",
            "      stages: [{prune: {method: wanda, pattern: \"2:4\"}}, {gptq: {bits: 4}}]",
            "",
            "Stage options: gptq: method (gptq|rtn), bits, group_size, sym, act_order, static_groups,",
            "  true_sequential, damp, mse, block_size, batch, calibration;  awq: bits, group_size,",
            "  duo_scaling, clip, skip_unfit (default true), export (gemm|fake), batch, calibration;  prune: method",
            "  (magnitude|wanda|sparsegpt), pattern (unstructured|N:M), sparsity, scope (layer|row|global),",
            "  targets, ignore, batch, calibration.",
            "",
            "Examples:",
            "  shrink compare examples/compare.yaml",
            "  shrink compare examples/compare.yaml --only rtn-w4,gptq-w4 --work-dir /tmp/cmp",
            "  shrink compare recipe.yaml --baseline main/report.json --max-ppl-increase 1%% \\",
            "      --max-size-increase 5%% --max-kl-increase 10%%",
            "Speed limits compare tokens/s across runs: use them only where both ran on the same machine."})
final class CompareCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "RECIPE", description = "The recipe (YAML).")
    Path recipe;

    @Option(names = "--work-dir", paramLabel = "DIR", description = "Cache and reports (default: beside the recipe, <recipe name>-out, e.g. examples/compare-out).")
    Path workDir;

    @Option(names = "--only", split = ",", paramLabel = "NAME", description = "Run only these pipelines (comma-separated; the baseline is measured whenever the recipe asks).")
    List<String> only = new ArrayList<>();

    @Option(names = "--device", paramLabel = "DEV", description = "Compute backend: auto, cpu, cpu-reference (default: the recipe's evaluation.device, else auto).")
    String device;

    @Option(names = "--threads", paramLabel = "N", description = "CPU threads (default: the recipe's evaluation.threads, else all cores).")
    Integer threads;

    @Option(names = {"-q", "--quiet"}, description = "No progress bars (the per-stage lines stay).")
    boolean quiet;

    @Option(names = "--debug", description = "Print stack traces with errors.")
    boolean debug;

    @Option(names = "--json", description = "Print report.json on stdout when done (keys: docs/JSON.md); the per-stage "
            + "lines and the gate's go to stderr.")
    boolean json;

    @Option(names = "--check", description = "Read and check the recipe (and --baseline), print its pipelines, and stop; nothing is written.")
    boolean check;

    @Option(names = "--baseline", paramLabel = "OLD.json", description = "An earlier compare's report.json to gate against (default limit: --max-ppl-increase 1%%).")
    Path baseline;

    @Option(names = "--max-ppl-increase", paramLabel = "P", description = "Fail when a perplexity exceeds the old one by more than P (1%% or an absolute 0.5).")
    String maxPpl;

    @Option(names = "--max-size-increase", paramLabel = "P", description = "Fail when the weight files grow by more than P (5%% or bytes).")
    String maxSize;

    @Option(names = "--max-speed-decrease", paramLabel = "P", description = "Fail when decode tokens/s drop by more than P (20%% or tokens/s).")
    String maxSpeed;

    @Option(names = "--max-kl-increase", paramLabel = "P", description = "Fail when KL from the baseline exceeds the old one by more than P (10%% or nats).")
    String maxKl;

    @Override
    public Integer call() {
        PrintWriter stdout = spec.commandLine().getOut();
        PrintWriter out = json ? spec.commandLine().getErr() : stdout; // with --json stdout holds the JSON only
        Gate.Limits limits = new Gate.Limits(
                maxPpl != null ? Gate.Limit.parse("--max-ppl-increase", maxPpl) : null,
                maxSize != null ? Gate.Limit.parse("--max-size-increase", maxSize) : null,
                maxSpeed != null ? Gate.Limit.parse("--max-speed-decrease", maxSpeed) : null,
                maxKl != null ? Gate.Limit.parse("--max-kl-increase", maxKl) : null);
        if (baseline == null && limits.any()) {
            throw new ShrinkException("--max-* limits need --baseline OLD/report.json to compare with");
        }
        if (baseline != null && !limits.any()) {
            limits = new Gate.Limits(new Gate.Limit(1, true), null, null, null);
        }
        if (threads != null) {
            dev.shrink.core.ops.Backends.threads(threads); // 0..MAX_THREADS, checked before hours of work
        }
        var old = baseline != null ? ReportJson.readTree(baseline) : null; // read before hours of work
        Recipe r = RecipeParser.read(recipe);
        if (check && json) {
            stdout.println(Json.write(java.util.Map.of("recipe", recipe.toAbsolutePath().normalize().toString(),
                    "model", r.model().toString(), "pipelines", r.pipelines().stream().map(Recipe.Pipeline::name).toList())));
            return 0;
        }
        if (check) {
            out.println(recipe + ": ok, model " + r.model() + ", " + r.pipelines().size() + " pipeline"
                    + (r.pipelines().size() == 1 ? "" : "s") + ": "
                    + String.join(", ", r.pipelines().stream().map(Recipe.Pipeline::name).toList()));
            return 0;
        }
        Path work = workDir != null ? workDir : defaultWorkDir(recipe);
        List<String> typed = new ArrayList<>(List.of("shrink")); // the arguments as typed, "compare" included
        typed.addAll(spec.commandLine().getParseResult().originalArgs());
        Compare.GateRequest gate = old != null ? new Compare.GateRequest(baseline.toString(), old, limits) : null;
        CompareReport report = Compare.run(r, new Compare.Options(work, only, device, threads, quiet,
                Compare.shellLine(typed), gate), out);
        List<CompareReport.Row> failed = report.results().stream().filter(x -> !x.ok()).toList();
        int code = 0;
        if (report.gate() != null) { // the verdict the reports hold
            CompareReport.GateVerdict g = report.gate();
            g.notes().forEach(n -> out.println("gate: note: " + n));
            g.failures().forEach(f -> out.println("gate: FAIL: " + f));
            if (g.passed()) {
                out.println("gate: passed (" + g.compared() + " metrics compared with " + baseline + ")");
            } else {
                out.println("gate: " + g.failures().size() + " metric" + (g.failures().size() == 1 ? "" : "s")
                        + " regressed against " + baseline);
                code = 3;
            }
        }
        out.flush();
        if (json) {
            stdout.println(Json.write(ReportJson.readTree(work.resolve("report.json"))));
            stdout.flush();
        }
        if (!failed.isEmpty() && code == 0) {
            throw new ShrinkException(failed.size() + " pipeline" + (failed.size() == 1 ? "" : "s") + " failed ("
                    + String.join("; ", failed.stream().map(x -> x.name() + ": " + x.error()).toList())
                    + "); the reports list them");
        }
        return code;
    }

    /** {@code <recipe folder>/<recipe name without extension>-out}. */
    static Path defaultWorkDir(Path recipe) {
        Path abs = recipe.toAbsolutePath().normalize();
        String n = abs.getFileName().toString();
        int dot = n.lastIndexOf('.');
        return abs.resolveSibling((dot > 0 ? n.substring(0, dot) : n) + "-out");
    }
}
