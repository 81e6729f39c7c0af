package dev.shrink.pipeline;

import java.util.List;
import java.util.Map;

/**
 * What {@code shrink compare} found: one row per result (the baseline and each pipeline), the
 * settings that make the numbers comparable, the machine and backend, and the Pareto fronts.
 * Written as report.json ({@link ReportFiles}), report.md and report.html.
 *
 * @param settings    the evaluation (seqlen resolved), the recipe's calibration, the stages' keys
 * @param definitions what each column means, in words (also printed under the tables)
 */
public record CompareReport(String tool, String created, String recipe, String model, String modelKey, Machine machine,
                            Map<String, Object> settings, List<Row> results, Fronts pareto,
                            Map<String, String> definitions) {

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
     * @param modelDir       where it is (under the work dir's stages/, or the input model)
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
