package dev.shrink.pipeline;

import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.prune.PruneStage;
import java.nio.file.Path;
import java.util.Map;

/**
 * A recipe's prune stage: magnitude and Wanda through the prune module's {@link PruneStage},
 * SparseGPT through GPTQ's machinery ({@link SparseGpt}, prune only: the recipe quantizes in a
 * following gptq stage).
 */
final class PruneRunner {
    private PruneRunner() {
    }

    static void run(StageSpec.Prune spec, Path input, Path output, int[][] windows, Map<String, Object> reportHead,
                    Ops ops, boolean quiet) {
        SparsityPattern pattern = spec.pattern().equals("unstructured")
                ? new SparsityPattern.Unstructured(spec.sparsity())
                : SparsityPattern.parse(spec.pattern());
        switch (spec.method()) {
            case "magnitude", "wanda" -> PruneStage.compress(input, output,
                    new PruneStage.Config(spec.method(), pattern, spec.scope(), spec.targets(), spec.ignore(), spec.batch()),
                    windows, ops, quiet, false);
            case "sparsegpt" -> SparseGpt.compress(input, output, pattern, spec.targets(), spec.ignore(), null,
                    SPARSEGPT_DAMP, SPARSEGPT_BLOCK, spec.batch(), windows, reportHead, ops, quiet, false);
            default -> throw new IllegalStateException("prune method " + spec.method());
        }
    }

    /** SparseGPT's reference settings: damp 1% of mean(diag H), blocks of 128 columns. */
    static final double SPARSEGPT_DAMP = 0.01;
    static final int SPARSEGPT_BLOCK = 128;
}
