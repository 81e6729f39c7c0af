package dev.shrink.distill;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Knowledge distillation of a student from a teacher (Hinton et al. 2015; shared/docs/ALGORITHMS.md,
 * "Knowledge distillation"): the training loop. Each step draws {@code batch} random windows, runs
 * them in micro-batches (gradient accumulation) through the teacher (forward only, the decoder of
 * {@link CausalLM}) and the student ({@link TrainModel}: forward, loss, backward), clips the
 * gradient's global norm, takes one AdamW step at the scheduled rate ({@link LrSchedule}) on the
 * float32 master weights, and sets the pruned weights back to zero. Every {@code checkpointEvery}
 * steps (and after the last) the state goes to a {@link DistillCheckpoint}, from which a killed
 * run resumes with the same result as an uninterrupted one.
 *
 * <p>The loss of a step, over the B·T rows of its windows:
 * <pre>
 * α · mean_rows(T² · D(teacher ‖ student))  +  (1 − α) · mean_rows with a next token(CE)
 *   + β · mean over mapped layers of mean((h_student − h_teacher)²)
 * </pre>
 * D the KL or reverse KL at temperature T ({@link Losses}); the hidden-state MSE (weight β) compares
 * the residual stream after student block l with the one after teacher block map[l].
 *
 * <p>A non-finite loss or gradient norm stops the run before the update: nothing of that step is
 * applied, the last checkpoint on disk (a good one) is kept, and the error says which step it holds.
 */
public final class DistillStage {
    private DistillStage() {
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The training options.
     *
     * @param steps           optimizer steps
     * @param batch           sequences per step
     * @param microBatch      sequences per forward/backward (batch is a multiple of it): gradient accumulation
     * @param seqlen          tokens per sequence
     * @param lr              peak learning rate
     * @param warmup          linear warm-up steps
     * @param clip            maximum global gradient norm (0: no clipping)
     * @param temperature     T of the KL
     * @param alpha           weight of the KL; 1 − alpha weights the cross-entropy
     * @param loss            KL or reverse KL
     * @param hiddenWeight    β of the hidden-state MSE (0: none)
     * @param layerMap        for each student block, the teacher block whose output it imitates (−1: none);
     *                        used when hiddenWeight &gt; 0
     * @param adam            AdamW's constants
     * @param seed            seed of the window draws
     * @param checkpointEvery steps between checkpoints (0: only after the last step)
     */
    public record Config(int steps, int batch, int microBatch, int seqlen, double lr, int warmup, double clip,
                         double temperature, double alpha, Losses.Kind loss, double hiddenWeight, int[] layerMap,
                         AdamW.Hyper adam, long seed, int checkpointEvery) {
        public Config {
            if (steps < 1) {
                throw new ShrinkException("--steps must be positive, got " + steps);
            }
            if (batch < 1) {
                throw new ShrinkException("--batch must be positive, got " + batch);
            }
            if (microBatch < 1 || batch % microBatch != 0) {
                throw new ShrinkException("--micro-batch must divide --batch " + batch + ", got " + microBatch);
            }
            if (seqlen < 2) {
                throw new ShrinkException("--seqlen must be at least 2, got " + seqlen);
            }
            if (!(lr > 0) || Double.isInfinite(lr)) {
                throw new ShrinkException("--lr must be positive, got " + lr);
            }
            if (warmup < 0) {
                throw new ShrinkException("--warmup must not be negative, got " + warmup);
            }
            if (!(clip >= 0) || Double.isInfinite(clip)) {
                throw new ShrinkException("--clip must be 0 (off) or positive, got " + clip);
            }
            if (!(temperature > 0) || Double.isInfinite(temperature)) {
                throw new ShrinkException("--temperature must be positive, got " + temperature);
            }
            if (!(alpha >= 0 && alpha <= 1)) {
                throw new ShrinkException("--alpha must be in [0, 1], got " + alpha);
            }
            if (loss == null) {
                throw new ShrinkException("no loss kind given (kl or reverse-kl)");
            }
            if (!(hiddenWeight >= 0) || Double.isInfinite(hiddenWeight)) {
                throw new ShrinkException("--hidden-weight must be 0 (off) or positive, got " + hiddenWeight);
            }
            if (checkpointEvery < 0) {
                throw new ShrinkException("--checkpoint-every must not be negative, got " + checkpointEvery);
            }
            layerMap = layerMap == null ? null : layerMap.clone();
        }

        /** The options an uninterrupted run and its resumption must share (not micro-batch or checkpoint spacing). */
        Map<String, Object> identity() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("steps", steps);
            m.put("batch", batch);
            m.put("seqlen", seqlen);
            m.put("lr", lr);
            m.put("warmup", warmup);
            m.put("clip", clip);
            m.put("temperature", temperature);
            m.put("alpha", alpha);
            m.put("loss", loss.label());
            m.put("hidden_weight", hiddenWeight);
            m.put("layer_map", hiddenWeight > 0 && layerMap != null ? Arrays.stream(layerMap).boxed().toList() : null);
            m.put("adam", List.of(adam.beta1(), adam.beta2(), adam.eps(), adam.weightDecay()));
            m.put("seed", seed);
            return m;
        }
    }

    /**
     * The student: its float32 master weights and the masks of its pruned linears.
     *
     * @param weights the trainable tensors (changed in place by training)
     * @param masks   tensor name → indices that stay exactly zero
     */
    public record Student(Weights<float[]> weights, Map<String, int[]> masks) {
    }

    /** The teacher: where its weights come from (a folder, or a quantized folder's dequantizing reader). */
    public record Teacher(WeightSource source, ModelConfig config, ArchitectureSpec spec) {
    }

    /**
     * One completed step.
     *
     * @param step     1-based
     * @param loss     the objective (what the gradient is of)
     * @param kl       mean T²·D over the rows (NaN when α = 0)
     * @param ce       mean cross-entropy of the next token (NaN when α = 1)
     * @param hidden   mean squared error of the mapped hidden states (NaN when β = 0)
     * @param gradNorm global gradient norm before clipping
     * @param lr       the learning rate of the step
     * @param seconds  training wall time up to the end of this step (resumed runs continue the count)
     */
    public record StepRecord(int step, double loss, double kl, double ce, double hidden, double gradNorm, double lr,
                             double seconds) {
    }

    /** Progress callbacks (the CLI prints them; tests may stop a run from them, as a kill would). */
    public interface Listener {
        Listener NONE = new Listener() { };

        /** After each step. */
        default void step(StepRecord r, int totalSteps) {
        }

        /** After each checkpoint. */
        default void checkpoint(int step, Path file) {
        }

        /** When the run continues from a checkpoint. */
        default void resumed(int step, Path file) {
        }
    }

    /**
     * What a run produced.
     *
     * @param curve       every step's record, from step 1 (those before a resume come from the checkpoint)
     * @param resumedFrom the step the run continued from (0: from the start)
     * @param seconds     training wall time, over all runs that made it
     * @param backend     the ops that trained
     * @param cpuSeconds  CPU time of this process during this run's steps (all threads; NaN where the
     *                    JVM cannot tell): with other work on the machine, seconds / cpuSeconds shows
     *                    how much of it training got
     * @param stepsThisRun steps run by this run (after a resume, fewer than the curve holds)
     */
    public record Result(Weights<float[]> weights, List<StepRecord> curve, int resumedFrom, double seconds,
                         long parameters, long maskedZeros, String backend, int trainTokens, double cpuSeconds,
                         int stepsThisRun, double secondsThisRun) {
    }

    /**
     * Trains {@code student} to imitate {@code teacher} on windows of {@code stream}.
     *
     * @param stream        the training token stream (BOS once), see {@link TrainText}
     * @param checkpointDir where checkpoints go (null: none, no resume)
     * @param resume        continue from the checkpoint in checkpointDir (it must exist and match)
     * @param runInfo       what else identifies the run for resumption (e.g. the teacher and student
     *                      folders); compared on resume like the options
     * @throws ShrinkException for incompatible teacher and student, a checkpoint that does not fit
     *                         the run, a non-finite loss, or a checkpoint that cannot be written
     */
    public static Result train(Teacher teacher, Student student, int[] stream, Config cfg, F32TrainOps ops,
                               Path checkpointDir, boolean resume, Map<String, Object> runInfo, Listener listener) {
        return train(teacher, student, stream, cfg, ops, null, checkpointDir, resume, runInfo, listener);
    }

    /**
     * {@link #train(Teacher, Student, int[], Config, F32TrainOps, Path, boolean, Map, Listener)} on
     * the ops {@code device} (e.g. {@link CudaTrainOps}): the student's weights, gradients, Adam
     * moments and the teacher's weights are copied to it once, the teacher runs its forward there
     * too ({@link TrainModel}, forward only), and the trained weights come back into the student's
     * float32 arrays at the end (checkpoints download them). Null: train with {@code ops} on the CPU.
     *
     * @param ops the CPU ops (the teacher's fingerprint; the whole run when device is null)
     */
    public static Result train(Teacher teacher, Student student, int[] stream, Config cfg, F32TrainOps ops,
                               TrainOps<?> device, Path checkpointDir, boolean resume, Map<String, Object> runInfo,
                               Listener listener) {
        return device == null ? run(teacher, student, stream, cfg, ops, ops, checkpointDir, resume, runInfo, listener)
                : run(teacher, student, stream, cfg, ops, device, checkpointDir, resume, runInfo, listener);
    }

    /** The teacher's forward of one micro-batch: its logits [M, V] and the block outputs asked for. */
    private interface TeacherForward<A> {
        A forward(int[] tokens, int mb, int T, boolean[] wanted, List<A> hidden);
    }

    @SuppressWarnings("unchecked")
    private static <A> Result run(Teacher teacher, Student student, int[] stream, Config cfg, F32TrainOps cpu,
                                  TrainOps<A> ops, Path checkpointDir, boolean resume, Map<String, Object> runInfo,
                                  Listener listener) {
        boolean onCpu = ops == (Object) cpu;
        Weights<float[]> hostWeights = student.weights();
        ModelConfig sc = hostWeights.config();
        checkCompatible(teacher, sc, cfg);
        TrainWindows windows = new TrainWindows(stream, cfg.seqlen(), cfg.seed());
        // float arrays: the teacher's fingerprint hashes its weights
        CausalLM lm = CausalLM.load(teacher.source(), teacher.config(), teacher.spec(), cpu.ops(), false);
        Map<String, Object> run = new LinkedHashMap<>(cfg.identity());
        run.put("data_sha256", TrainText.fingerprint(stream));
        run.put("student_sha256", fingerprint(hostWeights.entries().stream().map(Weights.Entry::value).toList()));
        run.put("teacher_sha256", teacherFingerprint(lm));
        if (runInfo != null) {
            run.putAll(runInfo);
        }

        Weights<A> w = onCpu ? (Weights<A>) hostWeights : hostWeights.map(ops::adopt);
        TeacherForward<A> teacherForward;
        if (onCpu) {
            teacherForward = (tokens, mb, T, wanted, hidden) -> {
                Taps taps = Taps.NONE;
                if (wanted != null) {
                    taps = new Taps() {
                        @Override
                        public void blockOutput(int layer, float[] x, int rows, int cols) {
                            if (wanted[layer]) {
                                hidden.set(layer, (A) x.clone());
                            }
                        }
                    };
                }
                return (A) lm.logits(lm.hidden(tokens, mb, T, null, taps), 0, mb * T);
            };
        } else {
            TrainModel<A> tm = new TrainModel<>(ops, Weights.load(teacher.source(), teacher.config(), teacher.spec(), ops),
                    cfg.seqlen());
            teacherForward = (tokens, mb, T, wanted, hidden) -> {
                TrainModel.Pass<A> p = tm.forward(tokens, mb, T);
                if (wanted != null) {
                    for (int l = 0; l < wanted.length; l++) {
                        if (wanted[l]) {
                            hidden.set(l, p.blockOutput(l));
                        }
                    }
                }
                return p.logits();
            };
        }

        List<Weights.Entry<A>> params = w.entries();
        Weights<A> grads = w.zerosLike(ops);
        List<Weights.Entry<A>> gradList = grads.entries();
        Map<String, A> m = new LinkedHashMap<>(), v = new LinkedHashMap<>();
        for (Weights.Entry<A> e : params) {
            m.put(e.name(), ops.zeros(ops.size(e.value())));
            v.put(e.name(), ops.zeros(ops.size(e.value())));
        }
        long maskedZeros = 0;
        for (Map.Entry<String, int[]> e : student.masks().entrySet()) {
            A p = w.get(e.getKey());
            if (p == null) {
                throw new IllegalArgumentException("mask for unknown tensor " + e.getKey());
            }
            ops.zeroAt(p, e.getValue());
            maskedZeros += e.getValue().length;
        }

        int start = 0;
        double priorSeconds = 0;
        List<StepRecord> curve = new ArrayList<>();
        boolean hasCheckpoint = checkpointDir != null && DistillCheckpoint.exists(checkpointDir);
        if (resume) {
            if (!hasCheckpoint) {
                throw new ShrinkException((checkpointDir == null ? "--resume" : DistillCheckpoint.file(checkpointDir).toString())
                        + ": no checkpoint to resume from");
            }
            Map<String, Integer> sizes = new LinkedHashMap<>();
            params.forEach(e -> sizes.put(e.name(), ops.size(e.value())));
            DistillCheckpoint.Loaded c = DistillCheckpoint.read(checkpointDir, sizes);
            checkSameRun(DistillCheckpoint.file(checkpointDir), c.state().run(), run);
            ops.beginStep();
            for (Weights.Entry<A> e : params) {
                load(ops, c.params().get(e.name()), e.value());
                load(ops, c.m().get(e.name()), m.get(e.name()));
                load(ops, c.v().get(e.name()), v.get(e.name()));
            }
            ops.endStep();
            start = c.state().step();
            windows.skip(c.state().windowsDrawn());
            curve.addAll(c.state().curve());
            priorSeconds = c.state().seconds();
            if (start > cfg.steps()) {
                throw ShrinkException.at(DistillCheckpoint.file(checkpointDir), "holds step " + start + " of a run of "
                        + cfg.steps() + " steps");
            }
            listener.resumed(start, DistillCheckpoint.file(checkpointDir));
        } else if (hasCheckpoint) {
            throw ShrinkException.at(checkpointDir, "holds a checkpoint of an earlier run: pass --resume to continue it, "
                    + "or delete the folder to start over");
        }

        int C = sc.hidden(), T = cfg.seqlen(), mb = cfg.microBatch();
        int accum = cfg.batch() / mb;
        int[] map = cfg.hiddenWeight() > 0 ? cfg.layerMap() : null;
        int pairs = 0;
        if (map != null) {
            for (int t : map) {
                pairs += t >= 0 ? 1 : 0;
            }
        }
        double klScale = cfg.alpha() / ((double) cfg.batch() * T);
        double ceScale = (1 - cfg.alpha()) / ((double) cfg.batch() * (T - 1));
        double hScale = pairs == 0 ? 0 : cfg.hiddenWeight() / ((double) pairs * cfg.batch() * T * C);
        LrSchedule schedule = new LrSchedule(cfg.lr(), cfg.warmup(), cfg.steps());
        TrainModel<A> model = new TrainModel<>(ops, w, T);
        int lastCheckpoint = start;
        long t0 = System.nanoTime();
        double cpu0 = processCpuSeconds();

        for (int s = start; s < cfg.steps(); s++) {
            ops.beginStep();
            for (Weights.Entry<A> g : gradList) {
                ops.zero(g.value());
            }
            Losses.Sums sums = Losses.Sums.ZERO;
            double se = 0;
            for (int a = 0; a < accum; a++) {
                Micro r = microBatch(windows.next(mb), teacherForward, teacher.config().layers(), model, grads, cfg, map,
                        klScale, ceScale, hScale);
                sums = sums.plus(r.sums());
                se += r.squaredError();
            }
            double loss = klScale * sums.kl() + ceScale * sums.ce() + hScale * se;
            double sq = 0;
            for (Weights.Entry<A> g : gradList) {
                sq += ops.sumSquares(g.value());
            }
            double gradNorm = Math.sqrt(sq);
            if (!Double.isFinite(loss) || !Double.isFinite(gradNorm)) {
                ops.endStep();
                throw nonFinite(s + 1, loss, gradNorm, checkpointDir, lastCheckpoint);
            }
            if (cfg.clip() > 0 && gradNorm > cfg.clip()) {
                double f = cfg.clip() / (gradNorm + 1e-6); // torch.nn.utils.clip_grad_norm_
                for (Weights.Entry<A> g : gradList) {
                    ops.scale(g.value(), f);
                }
            }
            double lr = schedule.at(s);
            AdamW.Step step = new AdamW.Step(cfg.adam(), lr, s + 1);
            for (int i = 0; i < params.size(); i++) {
                String name = params.get(i).name();
                ops.adamw(params.get(i).value(), gradList.get(i).value(), m.get(name), v.get(name), step);
            }
            for (Map.Entry<String, int[]> e : student.masks().entrySet()) {
                ops.zeroAt(w.get(e.getKey()), e.getValue());
            }
            ops.endStep();
            double seconds = priorSeconds + (System.nanoTime() - t0) / 1e9;
            StepRecord r = new StepRecord(s + 1, loss,
                    sums.klRows() > 0 ? sums.kl() / sums.klRows() : Double.NaN,
                    sums.ceRows() > 0 ? sums.ce() / sums.ceRows() : Double.NaN,
                    pairs > 0 ? se / ((double) pairs * cfg.batch() * T * C) : Double.NaN,
                    gradNorm, lr, seconds);
            curve.add(r);
            listener.step(r, cfg.steps());
            boolean last = s + 1 == cfg.steps();
            if (checkpointDir != null && (last || (cfg.checkpointEvery() > 0 && (s + 1) % cfg.checkpointEvery() == 0))) {
                checkpoint(checkpointDir, ops, params, m, v, s + 1, windows.position(), run, curve, seconds, lastCheckpoint);
                lastCheckpoint = s + 1;
                listener.checkpoint(s + 1, DistillCheckpoint.file(checkpointDir));
            }
        }
        double thisRun = (System.nanoTime() - t0) / 1e9;
        if (!onCpu) {
            // the trained weights back into the student's float32 arrays
            List<Weights.Entry<float[]>> host = hostWeights.entries();
            for (int i = 0; i < params.size(); i++) {
                float[] f = ops.toFloats(params.get(i).value());
                System.arraycopy(f, 0, host.get(i).value(), 0, f.length);
            }
        }
        return new Result(hostWeights, List.copyOf(curve), start, priorSeconds + thisRun,
                hostWeights.parameterCount(cpu), maskedZeros, ops.name(), stream.length, processCpuSeconds() - cpu0,
                cfg.steps() - start, thisRun);
    }

    /** dst = values (a checkpoint's tensor into a live array). */
    @SuppressWarnings("unchecked")
    private static <A> void load(TrainOps<A> ops, float[] values, A dst) {
        if (dst instanceof float[] f) {
            System.arraycopy(values, 0, f, 0, f.length);
        } else {
            ops.copy(ops.adopt(values), dst);
        }
    }

    /** The array's values on the host: itself for float[], a download otherwise. */
    private static <A> float[] host(TrainOps<A> ops, A a) {
        return a instanceof float[] f ? f : ops.toFloats(a);
    }

    /** CPU time of this process so far, or NaN. */
    static double processCpuSeconds() {
        if (java.lang.management.ManagementFactory.getOperatingSystemMXBean()
                instanceof com.sun.management.OperatingSystemMXBean os) {
            long ns = os.getProcessCpuTime();
            return ns < 0 ? Double.NaN : ns / 1e9;
        }
        return Double.NaN;
    }

    /** What one micro-batch adds to the step's loss: the loss sums and the hidden states' squared error. */
    private record Micro(Losses.Sums sums, double squaredError) {
    }

    /**
     * One micro-batch of windows (tokens: [mb·T]): the teacher's forward, the student's forward, the
     * loss and the backward, whose gradients are added into {@code grads}.
     *
     * @param map the layer map of the hidden-state loss, or null
     */
    private static <A> Micro microBatch(int[] tokens, TeacherForward<A> teacher, int teacherLayers, TrainModel<A> student,
                                        Weights<A> grads, Config cfg, int[] map, double klScale, double ceScale,
                                        double hScale) {
        TrainOps<A> ops = student.ops();
        ModelConfig sc = student.weights().config();
        int V = sc.vocab(), C = sc.hidden(), T = cfg.seqlen(), mb = tokens.length / T, M = mb * T;
        // teacher: logits zt [M, V] and, for the hidden-state loss, the block outputs it needs [M, C]
        List<A> tHidden = new ArrayList<>(java.util.Collections.nCopies(teacherLayers, (A) null));
        boolean[] wanted = null;
        if (map != null) {
            wanted = new boolean[teacherLayers];
            for (int t : map) {
                if (t >= 0) {
                    wanted[t] = true;
                }
            }
        }
        A zt = teacher.forward(tokens, mb, T, wanted, tHidden);
        // student: forward, the loss (its gradient written over the logits), the hidden-state loss, backward
        TrainModel.Pass<A> pass = student.forward(tokens, mb, T);
        int[] targets = cfg.alpha() < 1 ? targets(tokens, T) : null;
        Losses.Sums sums = ops.distillLoss(pass.logits(), cfg.alpha() > 0 ? zt : null, targets, cfg.loss(),
                cfg.temperature(), M, V, klScale, ceScale, pass.logits());
        double se = 0;
        List<A> dHidden = null;
        if (map != null) {
            dHidden = new ArrayList<>();
            for (int l = 0; l < map.length; l++) {
                A dh = null;
                if (map[l] >= 0) {
                    dh = ops.zeros(M * C);
                    se += ops.squaredError(pass.blockOutput(l), tHidden.get(map[l]), M * C, hScale, dh);
                }
                dHidden.add(dh);
            }
        }
        student.backward(pass, pass.logits(), dHidden, grads);
        return new Micro(sums, se);
    }

    /** The next token of every row of B windows of T tokens; −1 at each window's last position. */
    static int[] targets(int[] tokens, int T) {
        int[] t = new int[tokens.length];
        for (int i = 0; i < tokens.length; i++) {
            t[i] = i % T == T - 1 ? -1 : tokens[i + 1];
        }
        return t;
    }

    private static <A> void checkpoint(Path dir, TrainOps<A> ops, List<Weights.Entry<A>> params, Map<String, A> m,
                                       Map<String, A> v, int step, long drawn, Map<String, Object> run,
                                       List<StepRecord> curve, double seconds, int lastCheckpoint) {
        Map<String, float[][]> tensors = new LinkedHashMap<>();
        for (Weights.Entry<A> e : params) {
            if (!Double.isFinite(ops.sumSquares(e.value()))) {
                throw new ShrinkException("step " + step + ": tensor " + e.name() + " holds non-finite values after the "
                        + "update; training stopped without overwriting the checkpoint; " + lastGood(dir, lastCheckpoint));
            }
            tensors.put(e.name(), new float[][] {host(ops, e.value()), host(ops, m.get(e.name())),
                    host(ops, v.get(e.name()))});
        }
        try {
            DistillCheckpoint.write(dir, new DistillCheckpoint.State(DistillCheckpoint.FORMAT, step, drawn, run,
                    List.copyOf(curve), seconds), tensors);
        } catch (ShrinkException e) {
            throw new ShrinkException("checkpoint of step " + step + " not written: " + e.getMessage() + "; "
                    + lastGood(dir, lastCheckpoint), e);
        }
    }

    private static ShrinkException nonFinite(int step, double loss, double gradNorm, Path dir, int lastCheckpoint) {
        String what = !Double.isFinite(loss) ? "the loss is " + loss : "the gradient norm is " + gradNorm;
        return new ShrinkException(String.format(Locale.ROOT, "step %d: %s; training stopped before this step's update; %s "
                + "(a lower --lr or a --clip may help)", step, what, lastGood(dir, lastCheckpoint)));
    }

    private static String lastGood(Path dir, int lastCheckpoint) {
        if (dir == null) {
            return "no checkpoints were asked for";
        }
        if (lastCheckpoint == 0) {
            return "no checkpoint was written before it";
        }
        return "the last good checkpoint (step " + lastCheckpoint + ") is kept in " + DistillCheckpoint.file(dir)
                + ": continue with --resume";
    }

    /** Refuses to resume a run made with other options, data, student or teacher, naming the first difference. */
    private static void checkSameRun(Path file, Map<String, Object> saved, Map<String, Object> now) {
        JsonNode a = JSON.valueToTree(saved), b = JSON.valueToTree(now);
        for (var it = b.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            JsonNode x = a.get(k), y = b.get(k);
            boolean same = x != null && (x.isNumber() && y.isNumber() ? x.doubleValue() == y.doubleValue() : x.equals(y));
            if (!same) {
                throw ShrinkException.at(file, "was made by a run with " + k + " = " + (x == null ? "(none)" : x)
                        + "; this run has " + y + ": resume with the same options and models, or delete the folder "
                        + "to start over");
            }
        }
    }

    private static void checkCompatible(Teacher teacher, ModelConfig sc, Config cfg) {
        ModelConfig tc = teacher.config();
        if (tc.vocab() != sc.vocab()) {
            throw new ShrinkException("teacher and student vocabularies differ: " + tc.vocab() + " and " + sc.vocab()
                    + " tokens; distillation compares their distributions token by token");
        }
        if (cfg.seqlen() > Math.max(tc.maxPositions(), 1) && tc.maxPositions() > 0) {
            throw new ShrinkException("--seqlen " + cfg.seqlen() + " exceeds the teacher's max_position_embeddings "
                    + tc.maxPositions());
        }
        if (cfg.hiddenWeight() > 0) {
            if (tc.hidden() != sc.hidden()) {
                throw new ShrinkException("--hidden-weight: teacher and student hidden sizes differ (" + tc.hidden()
                        + " and " + sc.hidden() + "); the hidden-state loss compares them element by element");
            }
            int[] map = cfg.layerMap();
            if (map == null || map.length != sc.layers()) {
                throw new ShrinkException("--hidden-weight needs a layer map with one entry per student layer ("
                        + sc.layers() + ")");
            }
            for (int t : map) {
                if (t >= tc.layers()) {
                    throw new ShrinkException("--layer-map names teacher layer " + t + "; the teacher has " + tc.layers());
                }
            }
        }
    }

    /** SHA-256 of float arrays' bits, hex. */
    static String fingerprint(List<float[]> arrays) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
            for (float[] a : arrays) {
                buf.clear();
                buf.putInt(a.length);
                for (float f : a) {
                    if (!buf.hasRemaining()) {
                        sha.update(buf.array(), 0, buf.position());
                        buf.clear();
                    }
                    buf.putFloat(f);
                }
                sha.update(buf.array(), 0, buf.position());
            }
            return HexFormat.of().formatHex(sha.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String teacherFingerprint(CausalLM lm) {
        List<float[]> all = new ArrayList<>();
        all.add(lm.embedding());
        all.add(lm.head());
        all.add(lm.finalNormWeight());
        for (var b : lm.blocks()) {
            all.add(b.inputNorm());
            all.add(b.postAttentionNorm());
            if (b.qNorm() != null) {
                all.add(b.qNorm());
                all.add(b.kNorm());
            }
            for (String n : b.linearNames()) {
                all.add(b.weight(n));
                if (b.bias(n) != null) {
                    all.add(b.bias(n));
                }
            }
        }
        return fingerprint(all);
    }
}
