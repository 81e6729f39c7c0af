package dev.shrink.pipeline;

import dev.shrink.core.Version;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.gptq.GptqStage;
import dev.shrink.gptq.QuantScheme;
import dev.shrink.prune.PruneStage;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * SparseGPT as a pruning method: the linears are chosen by the pruning stage's rules
 * ({@link PruneStage#plan}: targets, ignore, the N:M fit), the work is GPTQ's solver with a sparsity
 * ({@link GptqStage}, method "sparsegpt"). Prune only: a dense folder with exact zeros; with a
 * quantization scheme (pruned and quantized jointly): a GPTQ folder. It lives here because it joins
 * two stage modules, which never depend on each other.
 */
public final class SparseGpt {
    private SparseGpt() {
    }

    /**
     * The full names of the linears SparseGPT will process; refuses bad patterns, a plan that prunes
     * nothing and N:M misfits before any work, as {@link PruneStage#plan} does.
     */
    public static Set<String> targets(ModelDir dir, SparsityPattern pattern, List<String> targets, List<String> ignore) {
        PrunedCheckpoint.requireUnquantized(dir);
        Set<String> only = new LinkedHashSet<>();
        for (PruneStage.Target t : PruneStage.plan(dir, FusedLinears.of(dir), pattern, targets, ignore)) {
            if (t.pruned()) {
                only.add(t.name());
            }
        }
        return only;
    }

    /** The stage config for these options; {@code scheme} null prunes only. */
    public static GptqStage.Config config(Set<String> only, SparsityPattern pattern, QuantScheme scheme, double damp,
                                          int blockSize, int batch) {
        return new GptqStage.Config("sparsegpt", scheme, false, false, true, damp, blockSize, batch, pattern, only);
    }

    /** Model dir in, model dir out (see the class comment). */
    public static GptqStage.Result compress(Path model, Path outDir, SparsityPattern pattern, List<String> targets,
                                            List<String> ignore, QuantScheme scheme, double damp, int blockSize,
                                            int batch, int[][] windows, Map<String, Object> reportHead, Ops ops,
                                            boolean quiet, boolean overwrite) {
        Set<String> only;
        try (ModelDir dir = ModelDir.open(model)) {
            only = targets(dir, pattern, targets, ignore);
        }
        return GptqStage.compress(model, outDir, config(only, pattern, scheme, damp, blockSize, batch), windows,
                reportHead, Version.quantizer(), ops, quiet, overwrite);
    }
}
