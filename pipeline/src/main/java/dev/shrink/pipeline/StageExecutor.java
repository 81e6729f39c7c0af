package dev.shrink.pipeline;

import dev.shrink.core.ops.Ops;
import java.nio.file.Path;
import java.util.Map;

/**
 * Runs one stage: model folder {@code input} in, model folder {@code output} out (written atomically:
 * it exists only when complete). {@link Stages#run} is the real one; tests wrap it to count runs.
 */
@FunctionalInterface
public interface StageExecutor {
    /**
     * @param windows    calibration windows [n][T], or null when the stage reads none
     * @param reportHead the first entries of the stage's shrink-report.json (stage, tool, backend, source, calibration)
     */
    void run(StageSpec stage, Path input, Path output, int[][] windows, Map<String, Object> reportHead, Ops ops,
             boolean quiet);
}
