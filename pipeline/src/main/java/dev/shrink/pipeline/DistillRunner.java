package dev.shrink.pipeline;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.distill.AdamW;
import dev.shrink.distill.CudaTrainOps;
import dev.shrink.distill.DistillCheckpoint;
import dev.shrink.distill.DistillRun;
import dev.shrink.distill.DistillStage;
import dev.shrink.distill.F32TrainOps;
import dev.shrink.distill.Losses;
import dev.shrink.eval.WeightSources;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.Map;

/**
 * A recipe's distill stage: the stage's input is the student, written to the stage's output
 * folder by {@link DistillRun}. Its checkpoints go beside that folder ({@code <key>.checkpoint}),
 * so a compare interrupted during training resumes the training where it stopped when it runs
 * again; they are removed once the output is in place. Training runs on the GPU
 * ({@link CudaTrainOps}, in the backend's GEMM arithmetic) when the compare's backend is cuda,
 * else on the CPU backend; the stage's report names it ({@code training.backend}).
 */
final class DistillRunner {
    private DistillRunner() {
    }

    static void run(StageSpec.Distill d, Path input, Path output, Map<String, Object> reportHead, Ops ops, boolean quiet) {
        DistillStage.Config cfg = new DistillStage.Config(d.steps(), d.batch(), d.microBatch(), d.seqlen(), d.lr(),
                d.warmup(), d.clip(), d.temperature(), d.alpha(), Losses.Kind.parse(d.loss()), d.hiddenWeight(), null,
                new AdamW.Hyper(0.9, 0.999, 1e-8, d.weightDecay()), d.seed(), 50);
        Path abs = output.toAbsolutePath().normalize();
        Path ckpt = abs.resolveSibling(abs.getFileName() + ".checkpoint");
        DistillRun.Request req = new DistillRun.Request(d.teacher(), input, null, output, false, cfg, d.data(), null, false,
                false, ckpt, DistillCheckpoint.exists(ckpt), false, "source", reportHead);
        Ops cpu = ops.name().startsWith("cpu") ? ops : Backends.select("cpu", 0);
        F32TrainOps train = new F32TrainOps(cpu, Runtime.getRuntime().availableProcessors());
        if (ops instanceof CudaOps cuda) {
            try (CudaTrainOps gpu = new CudaTrainOps(cuda.device(), cuda.math())) {
                DistillRun.run(req, WeightSources::forModel, null, train, gpu, DistillStage.Listener.NONE);
            }
        } else {
            DistillRun.run(req, WeightSources::forModel, null, train, DistillStage.Listener.NONE);
        }
    }
}
