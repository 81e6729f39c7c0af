package dev.shrink.pipeline;

import dev.shrink.awq.AwqCheckpoint;
import dev.shrink.awq.AwqStage;
import dev.shrink.core.Version;
import dev.shrink.core.ops.Ops;
import dev.shrink.gptq.GptqStage;
import dev.shrink.gptq.QuantScheme;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

/** The stage modules' entry points, chosen by the stage's kind: the pipeline's real {@link StageExecutor}. */
public final class Stages {
    private Stages() {
    }

    /** Runs {@code stage} on {@code input}, writing {@code output} (which must not exist). */
    public static void run(StageSpec stage, Path input, Path output, int[][] windows, Map<String, Object> reportHead,
                           Ops ops, boolean quiet) {
        switch (stage) {
            case StageSpec.Gptq g -> {
                GptqStage.Config cfg = new GptqStage.Config(g.method(),
                        QuantScheme.of(g.bits(), g.groupSize(), g.sym()).withMse(g.mse()), g.actOrder(), g.staticGroups(),
                        g.trueSequential(), g.damp(), g.blockSize(), g.batch()).withMethods(g.awqScales(), g.gptaq());
                int[][] w = windows != null ? windows : new int[][] {{0}}; // round-to-nearest reads none
                GptqStage.compress(input, output, cfg, w, reportHead, Version.quantizer(), ops, quiet, false, g.rotate());
            }
            case StageSpec.Awq a -> {
                AwqStage.Config cfg = new AwqStage.Config(a.groupSize(), a.duoScaling(), a.clip(), a.skipUnfit(), a.batch());
                AwqStage.compress(input, output, cfg, AwqCheckpoint.Export.valueOf(a.export().toUpperCase(Locale.ROOT)),
                        windows, reportHead, ops, quiet, false, a.rotate());
            }
            case StageSpec.Prune p -> PruneRunner.run(p, input, output, windows, reportHead, ops, quiet);
            case StageSpec.Distill d -> DistillRunner.run(d, input, output, reportHead, ops, quiet);
        }
    }
}
