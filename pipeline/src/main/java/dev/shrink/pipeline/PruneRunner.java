package dev.shrink.pipeline;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Ops;
import java.nio.file.Path;

/**
 * THE ONE PLACE THAT CALLS THE PRUNE MODULE. The prune module ({@code dev.shrink.prune.PruneStage})
 * is being written in another branch; until it is merged this runner refuses, and a pipeline with a
 * prune stage is reported as failed while the others run.
 *
 * <p>To wire it at merge: add {@code shrink-prune} to pipeline/pom.xml and replace the body with
 * <pre>
 * SparsityPattern pattern = spec.pattern().equals("unstructured")
 *         ? (an unstructured pattern of spec.sparsity())
 *         : (an N:M pattern parsed from spec.pattern(), e.g. "2:4");
 * PruneStage.compress(input, output,
 *         new PruneStage.Config(spec.method(), pattern, spec.scope(), spec.targets(), spec.ignore(), spec.batch()),
 *         windows, ops, quiet, false);
 * </pre>
 * ({@code windows} is null for magnitude pruning, which reads no calibration; {@code spec.scope()}
 * is null when the recipe leaves the method's default.)
 */
final class PruneRunner {
    private PruneRunner() {
    }

    static void run(StageSpec.Prune spec, Path input, Path output, int[][] windows, Ops ops, boolean quiet) {
        throw new ShrinkException("the prune stage needs the prune module (not merged yet)");
    }
}
