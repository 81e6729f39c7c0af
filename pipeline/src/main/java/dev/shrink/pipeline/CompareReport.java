package dev.shrink.pipeline;

import java.util.List;
import java.util.Map;

/**
 * What {@code shrink compare} found: one row per result (the baseline and each pipeline), the
 * settings that make the numbers comparable, the machine and backend, and the Pareto fronts.
 * Written as report.json ({@link ReportFiles}), report.md and report.html.
 *
 * <p>Paths ({@code recipe}, {@code model}, each row's {@code model_dir}) are relative to the work dir
 * (the folder holding the report), so a report names no machine's folders and stays valid when the
 * work dir is moved with its inputs.
 *
 * @param recipe      the recipe file, relative to the work dir
 * @param model       the input model folder, relative to the work dir
 * @param settings    the evaluation (seqlen resolved), the recipe's calibration, the stages' keys
 * @param definitions what each column means, in words (also printed under the tables)
 * @param command     the command that reproduces this report, as typed ("shrink compare examples/compare.yaml")
 * @param commandDir  where it was run, relative to the work dir (".." when run beside it)
 * @param gate        the gate's verdict against an old report.json; null when none was given
 */
public record CompareReport(String tool, String created, String recipe, String model, String modelKey, Machine machine,
                            Map<String, Object> settings, List<Row> results, Fronts pareto,
                            Map<String, String> definitions, String command, String commandDir, GateVerdict gate) {

    /** A report without the command and the gate. */
    public CompareReport(String tool, String created, String recipe, String model, String modelKey, Machine machine,
                         Map<String, Object> settings, List<Row> results, Fronts pareto, Map<String, String> definitions) {
        this(tool, created, recipe, model, modelKey, machine, settings, results, pareto, definitions, null, null, null);
    }

    /** This report with the gate's verdict. */
    public CompareReport withGate(GateVerdict verdict) {
        return new CompareReport(tool, created, recipe, model, modelKey, machine, settings, results, pareto, definitions, command,
                commandDir, verdict);
    }

    /**
     * What the gate found ({@link Gate}).
     *
     * @param baseline the old report.json as given on the command line
     * @param limits   the limits checked ("perplexity +1%", ...)
     * @param compared metrics compared
     * @param failures one line per failing metric
     * @param notes    what was not compared or not failed, and why
     */
    public record GateVerdict(String baseline, List<String> limits, boolean passed, int compared, List<String> failures,
                              List<String> notes) {
        /** "passed: 4 metrics compared with OLD" or "FAILED: 2 metrics regressed against OLD". */
        public String summary() {
            return passed ? "passed (" + compared + " metric" + (compared == 1 ? "" : "s") + " compared with " + baseline + ")"
                    : "FAILED (" + failures.size() + " metric" + (failures.size() == 1 ? "" : "s") + " regressed against "
                    + baseline + ")";
        }
    }

    /**
     * Where it ran. {@code backend}: Ops.name() of every compression and measurement.
     * {@code vectorBits}: the CPU's preferred vector size, for the speed columns only: outputs and
     * perplexities do not depend on it nor on the threads (README, "Determinism").
     */
    public record Machine(String os, String arch, int cores, String java, String backend, int threads, long maxHeapBytes,
                          int vectorBits) {
    }

    /**
     * One result.
     *
     * @param stages         the stages, described with every option ("gptq(method=rtn, bits=4, ...)"); empty for the baseline
     * @param modelKey       the content key of the result's model folder
     * @param modelDir       where it is, relative to the work dir (stages/KEY, or the input model's folder)
     * @param compressSeconds wall time of the stages (cached stages count their original time)
     * @param stagesRun      stages run now
     * @param stagesCached   stages taken from the cache
     * @param measuresCached the measurements were taken from the cache
     * @param measures       null when the pipeline failed
     * @param error          why it failed, or null
     */
    public record Row(String name, List<String> stages, String modelKey, String modelDir, double compressSeconds,
                      int stagesRun, int stagesCached, boolean measuresCached, Measures measures, String error) {
        public boolean ok() {
            return error == null && measures != null;
        }
    }

    /**
     * The Pareto fronts on the first evaluation set: results no other result beats on both axes
     * (smaller and lower perplexity; faster decode and lower perplexity).
     */
    public record Fronts(String dataset, List<String> sizeVsPerplexity, List<String> speedVsPerplexity) {
    }
}
