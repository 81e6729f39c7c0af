package dev.shrink.cli;

import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.util.Progress;
import dev.shrink.distill.AdamW;
import dev.shrink.distill.CudaTrainOps;
import dev.shrink.distill.DistillRun;
import dev.shrink.distill.DistillStage;
import dev.shrink.distill.F32TrainOps;
import dev.shrink.distill.Losses;
import dev.shrink.distill.TrainText;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.WeightSources;
import dev.shrink.kernels.cuda.CudaOps;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "distill", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Knowledge distillation: train a student to imitate a teacher, token by token,",
            "on random windows of training text (Hinton et al. 2015). The loss per token is",
            "  alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE,",
            "plus --hidden-weight * MSE of mapped hidden states. AdamW (torch defaults:",
            "betas 0.9/0.999, eps 1e-8, weight decay 0.01) on float32 master weights,",
            "linear warm-up then cosine decay, gradient clipping, gradient accumulation",
            "(--micro-batch), checkpoints every --checkpoint-every steps (--resume).",
            "Students: a pruned model (its zeros stay zero after every step), a copy of",
            "the teacher without some layers (--drop-layers), or any folder of the same",
            "family and vocabulary. The teacher may be quantized (GPTQ/AWQ folders).",
            "The output is a dense folder in the student's dtype (bf16 weights are the",
            "float32 masters rounded to nearest even), with shrink-report.json and",
            "loss-curve.svg. Trains on the GPU with --device cuda (auto: when one works",
            "here; its GEMMs in --gpu-math), else on the CPU."},
        footer = {"", "Examples:",
            "  shrink prune ../shared/models/fixture-llama-14m --work-dir /tmp/p24 \\",
            "      --method magnitude --pattern 2:4",
            "  shrink distill --teacher ../shared/models/fixture-llama-14m --student /tmp/p24 \\",
            "      --work-dir /tmp/p24-kd --steps 400 --eval-windows 200",
            "  shrink distill --teacher MODEL --drop-layers 1,3 --work-dir OUT --hidden-weight 1",
            "  shrink distill ... --resume          (continue a killed run from its checkpoint)"})
final class DistillCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    HubOptions hub;

    @Option(names = "--teacher", required = true, paramLabel = "DIR", description = "The teacher model folder (may be GPTQ/AWQ-quantized).")
    Path teacher;

    @Option(names = "--student", paramLabel = "DIR", description = "The student model folder (e.g. from shrink prune).")
    Path student;

    @Option(names = "--drop-layers", paramLabel = "L", split = ",", description = "Student = the teacher without these layers (0-based, comma-separated).")
    List<Integer> dropLayers;

    @Option(names = "--work-dir", required = true, paramLabel = "OUT", description = "Output folder (appears only when complete).")
    Path workDir;

    @Option(names = "--overwrite", description = "Replace a non-empty --work-dir (once the new folder is complete).")
    boolean overwrite;

    @Option(names = "--steps", defaultValue = "400", paramLabel = "N", description = "Optimizer steps. Default: ${DEFAULT-VALUE}.")
    int steps;

    @Option(names = "--batch", defaultValue = "8", paramLabel = "B", description = "Sequences per step. Default: ${DEFAULT-VALUE}.")
    int batch;

    @Option(names = "--micro-batch", paramLabel = "N", description = "Sequences per forward/backward (divides --batch; gradients accumulate). Default: --batch.")
    Integer microBatch;

    @Option(names = "--seqlen", defaultValue = "512", paramLabel = "T", description = "Tokens per sequence. Default: ${DEFAULT-VALUE}.")
    int seqlen;

    @Option(names = "--lr", defaultValue = "3e-4", paramLabel = "LR", description = "Peak learning rate. Default: ${DEFAULT-VALUE}.")
    double lr;

    @Option(names = "--warmup", defaultValue = "20", paramLabel = "N", description = "Linear warm-up steps. Default: ${DEFAULT-VALUE}.")
    int warmup;

    @Option(names = "--clip", defaultValue = "1.0", paramLabel = "G", description = "Clip the global gradient norm to G (0: off). Default: ${DEFAULT-VALUE}.")
    double clip;

    @Option(names = "--weight-decay", defaultValue = "0.01", paramLabel = "W", description = "AdamW's decoupled weight decay. Default: ${DEFAULT-VALUE}.")
    double weightDecay;

    @Option(names = "--temperature", defaultValue = "1", paramLabel = "T", description = "Softmax temperature of the KL. Default: ${DEFAULT-VALUE}.")
    double temperature;

    @Option(names = "--alpha", defaultValue = "1.0", paramLabel = "A", description = "Weight of the KL; 1 - A weights the cross-entropy on the text. Default: ${DEFAULT-VALUE}.")
    double alpha;

    @Option(names = "--loss", defaultValue = "kl", paramLabel = "kl|reverse-kl", description = "KL(teacher||student) or KL(student||teacher). Default: ${DEFAULT-VALUE}.")
    String loss;

    @Option(names = "--hidden-weight", defaultValue = "0", paramLabel = "B", description = "Weight of the hidden-state MSE between mapped layers (0: off).")
    double hiddenWeight;

    @Option(names = "--layer-map", paramLabel = "S:T", split = ",", description = "With --hidden-weight: student layer S imitates teacher layer T. Default: the kept layers (--drop-layers) or the same index.")
    List<String> layerMap;

    @Option(names = "--calib-dataset", defaultValue = TrainText.DEFAULT, paramLabel = "SRC[,SRC...]", description = "Training text: c4, ptb, wikitext2-valid, ptb-valid, or .txt/.jsonl/.arrow/.parquet files or folders. Default: ${DEFAULT-VALUE} (the golden protocol's).")
    String dataset;

    @Option(names = "--calib-field", paramLabel = "NAME", description = "JSON field / column holding the text (default: text).")
    String field;

    @Option(names = "--allow-eval-text", description = "Allow training on evaluation text (wikitext2 test, heldout, tinystories, ptb test).")
    boolean allowEvalText;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "Seed of the random windows (Python random.seed semantics). Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--keep-zeros", description = "Keep every exact zero of every decoder linear (students pruned by other tools). Default: the linears config.json's shrink.sparsity lists.")
    boolean keepZeros;

    @Option(names = "--checkpoint-dir", paramLabel = "DIR", description = "Where checkpoints go. Default: OUT.checkpoint beside the output.")
    Path checkpointDir;

    @Option(names = "--checkpoint-every", defaultValue = "50", paramLabel = "N", description = "Steps between checkpoints (0: only after the last). Default: ${DEFAULT-VALUE}.")
    int checkpointEvery;

    @Option(names = "--resume", description = "Continue from the checkpoint (same options and models).")
    boolean resume;

    @Option(names = "--keep-checkpoint", description = "Leave the checkpoint folder after success.")
    boolean keepCheckpoint;

    @Option(names = "--save-dtype", defaultValue = "source", paramLabel = "source|bf16|f16|f32", description = "dtype of the trained weights. Default: ${DEFAULT-VALUE} (each tensor's own).")
    String saveDtype;

    @Option(names = "--eval-windows", defaultValue = "0", paramLabel = "N", description = "Perplexity of teacher, student before and after on the first N windows of --eval-datasets (0: none).")
    int evalWindows;

    @Option(names = "--eval-datasets", defaultValue = "heldout,wikitext2", split = ",", paramLabel = "SET", description = "Evaluation sets for --eval-windows. Default: ${DEFAULT-VALUE}.")
    List<String> evalDatasets;

    @Override
    public Integer call() {
        teacher = hub.resolveAny(teacher, common.quiet);
        student = hub.resolveAny(student, common.quiet);
        hub.checkRevisionUsed(teacher);
        Losses.Kind kind = Losses.Kind.parse(loss);
        if (kind == null) {
            throw new ShrinkException("--loss must be kl or reverse-kl, got '" + loss + "'");
        }
        if (evalWindows < 0) {
            throw new ShrinkException("--eval-windows must be ≥ 0, got " + evalWindows);
        }
        if (layerMap != null && !(hiddenWeight > 0)) {
            throw new ShrinkException("--layer-map goes with --hidden-weight (the hidden-state loss it maps)");
        }
        if (!(weightDecay >= 0) || Double.isInfinite(weightDecay)) {
            throw new ShrinkException("--weight-decay must be ≥ 0, got " + weightDecay);
        }
        DistillStage.Config cfg = new DistillStage.Config(steps, batch, microBatch == null ? batch : microBatch, seqlen, lr,
                warmup, clip, temperature, alpha, kind, hiddenWeight, parseLayerMap(),
                new AdamW.Hyper(0.9, 0.999, 1e-8, weightDecay), seed, checkpointEvery);
        Ops ops = ops();
        DistillRun.Request req = new DistillRun.Request(teacher, student, dropLayers, workDir, overwrite, cfg, dataset,
                field, allowEvalText, keepZeros, checkpointDir, resume, keepCheckpoint, saveDtype,
                CalibOptions.reportHead("distill", student != null ? student : teacher, ops));
        int threads = Backends.threads(common.threads);
        // on the cuda backend training runs on the GPU (CudaTrainOps, its GEMMs in --gpu-math); the CPU
        // ops still load the weights and run what the CPU does (the teacher's fingerprint)
        CudaTrainOps gpu = ops instanceof CudaOps cuda ? new CudaTrainOps(cuda.device(), cuda.math()) : null;
        F32TrainOps train = new F32TrainOps(gpu == null ? ops : Backends.select("cpu", threads), threads);
        PrintWriter err = spec.commandLine().getErr();
        PrintWriter out = common.json ? err : spec.commandLine().getOut(); // with --json stdout holds the JSON only
        out.printf(Locale.ROOT, "distill: %s, %d steps of %d x %d tokens, lr %s, %s T=%s alpha=%s%s; %s%n",
                student != null ? student : "teacher without layers " + dropLayers, steps, batch, seqlen, lr,
                kind.label(), temperature, alpha, hiddenWeight > 0 ? ", hidden MSE x " + hiddenWeight : "",
                gpu != null ? gpu.name() : train.name());
        out.flush();
        DistillRun.Outcome o;
        try {
            o = DistillRun.run(req, WeightSources::forModel, evalWindows > 0 ? evaluator(ops, out) : null, train, gpu,
                    listener(err));
        } finally {
            if (gpu != null) {
                gpu.close();
            }
        }
        if (common.json) {
            spec.commandLine().getOut().println(Json.write(Json.folderResult("distill", workDir)));
            return 0;
        }
        DistillStage.Result r = o.result();
        double secs = r.secondsThisRun();
        int ran = Math.max(1, r.stepsThisRun());
        out.printf(Locale.ROOT, "trained %d steps (%s) in %s: %.2f s/step (%.2f CPU-s/step), %.0f tokens/s; %d parameters, "
                        + "%d kept zeros%n",
                r.curve().size(), r.resumedFrom() > 0 ? "resumed at step " + r.resumedFrom() : "from the start",
                Progress.clock(secs), secs / ran, r.cpuSeconds() / ran,
                (double) r.stepsThisRun() * batch * seqlen / Math.max(1e-9, secs), r.parameters(), r.maskedZeros());
        for (int i = 0; i < o.after().size(); i++) {
            DistillRun.Ppl a = o.after().get(i);
            DistillRun.Ppl b = i < o.before().size() ? o.before().get(i) : null;
            DistillRun.Ppl t = i < o.teacherPpl().size() ? o.teacherPpl().get(i) : null;
            out.printf(Locale.ROOT, "%-10s ppl  teacher %.4f  student before %.4f  after %.4f  (seqlen %d, %d windows)%n",
                    a.dataset(), t == null ? Double.NaN : t.ppl(), b == null ? Double.NaN : b.ppl(), a.ppl(), a.seqlen(),
                    a.windows());
        }
        out.printf(Locale.ROOT, "wrote %s (%s; weights saved as %s)%n", workDir,
                InspectCommand.human(GptqCommand.folderBytes(workDir)),
                o.savedAs() == null ? "each tensor's source dtype" : o.savedAs().safetensorsName());
        return 0;
    }

    /** The backend: auto is cuda when a GPU works here (training then runs on it), else cpu. */
    private Ops ops() {
        return common.ops();
    }

    private int[] parseLayerMap() {
        if (layerMap == null) {
            return null;
        }
        List<int[]> pairs = new ArrayList<>();
        int maxS = -1;
        for (String p : layerMap) {
            String[] st = p.strip().split(":");
            try {
                if (st.length != 2) {
                    throw new NumberFormatException();
                }
                int s = Integer.parseInt(st[0].strip()), t = Integer.parseInt(st[1].strip());
                if (s < 0 || t < 0) {
                    throw new NumberFormatException();
                }
                pairs.add(new int[] {s, t});
                maxS = Math.max(maxS, s);
            } catch (NumberFormatException e) {
                throw new ShrinkException("--layer-map: '" + p + "' is not STUDENT:TEACHER (two layer numbers ≥ 0)");
            }
        }
        // the student's layer count is known later; unmapped layers get −1, out-of-range ones are refused there
        int[] map = new int[maxS + 1];
        java.util.Arrays.fill(map, -1);
        for (int[] st : pairs) {
            if (map[st[0]] >= 0) {
                throw new ShrinkException("--layer-map maps student layer " + st[0] + " twice");
            }
            map[st[0]] = st[1];
        }
        return map;
    }

    private DistillRun.Evaluator evaluator(Ops ops, PrintWriter out) {
        return (label, weights, config, arch, tok) -> {
            CausalLM lm = CausalLM.load(weights, config, arch, ops);
            List<DistillRun.Ppl> res = new ArrayList<>();
            int T = Math.min(config.maxPositions(), 2048);
            for (String d : evalDatasets) {
                EvalText text = EvalText.load(d.strip());
                int[] body = tok.encode(text.text());
                Integer bos = config.bosTokenId();
                int[] ids = body;
                if (bos != null) {
                    ids = new int[body.length + 1];
                    ids[0] = bos;
                    System.arraycopy(body, 0, ids, 1, body.length);
                }
                PplResult p = Perplexity.evaluate(lm, text.name(), ids, T, evalWindows, true);
                out.printf(Locale.ROOT, "%-15s %s%n", label, p.summary());
                out.flush();
                res.add(new DistillRun.Ppl(p.dataset(), p.seqlen(), p.windows(), p.predictions(), p.ppl()));
            }
            return res;
        };
    }

    /** Progress on stderr: every step on a terminal, every 10th (and the last) otherwise; nothing with -q. */
    private DistillStage.Listener listener(PrintWriter err) {
        boolean terminal = System.console() != null && System.console().isTerminal();
        return new DistillStage.Listener() {
            private double firstSeconds = -1;
            private int firstStep;

            @Override
            public void step(DistillStage.StepRecord r, int total) {
                if (firstSeconds < 0) {
                    firstSeconds = r.seconds();
                    firstStep = r.step();
                }
                if (common.quiet || !(terminal || r.step() % 10 == 0 || r.step() == total || r.step() == firstStep)) {
                    return;
                }
                double perStep = r.step() > firstStep ? (r.seconds() - firstSeconds) / (r.step() - firstStep) : r.seconds();
                String parts = (Double.isNaN(r.kl()) ? "" : String.format(Locale.ROOT, "  kl %.4f", r.kl()))
                        + (Double.isNaN(r.ce()) ? "" : String.format(Locale.ROOT, "  ce %.4f", r.ce()))
                        + (Double.isNaN(r.hidden()) ? "" : String.format(Locale.ROOT, "  hidden %.4g", r.hidden()));
                err.printf(Locale.ROOT, "%sstep %d/%d  loss %.4f%s  |g| %.3f  lr %.2e  %.2f s/step  ETA %s%s",
                        terminal ? "\r" : "", r.step(), total, r.loss(), parts, r.gradNorm(), r.lr(), perStep,
                        Progress.clock(perStep * (total - r.step())), terminal && r.step() < total ? "" : "\n");
                err.flush();
            }

            @Override
            public void checkpoint(int step, Path file) {
                if (!common.quiet && terminal) {
                    err.printf(Locale.ROOT, "%n");
                }
            }

            @Override
            public void resumed(int step, Path file) {
                err.printf(Locale.ROOT, "resuming from step %d (%s)%n", step, file);
                err.flush();
            }
        };
    }
}
