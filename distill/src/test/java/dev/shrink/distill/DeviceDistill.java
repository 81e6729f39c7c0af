package dev.shrink.distill;

import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.tensor.DType;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.kernels.cuda.GemmMath;
import dev.shrink.prune.PruneStage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The distillation golden protocol (scripts/quality-distill.sh) on the GPU machine, where there is
 * no tokenizer library: the token files come from {@link DistillTokens}. Prunes the teacher 2:4 by
 * magnitude with the prune stage (as {@code shrink prune --method magnitude --pattern 2:4}), trains
 * the student with {@link CudaTrainOps} through {@link DistillStage} (KL at T = 1, 400 steps of
 * 8 × 512, AdamW 3e-4, 20 warm-up steps, cosine decay, clip 1.0), and measures perplexity on the
 * first 200 windows of heldout and wikitext2 for the teacher, the pruned student and the trained
 * student as the folder would hold it (rounded to the source's bf16), the evaluation decoder on
 * {@code -Dshrink.distill.evalDevice} (default cuda, float32 GEMMs).
 *
 * <pre>DeviceDistill MODEL_DIR TOKENS_DIR WORK_DIR [tf32|fp32] [STEPS=400]</pre>
 */
public final class DeviceDistill {
    private DeviceDistill() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: DeviceDistill MODEL_DIR TOKENS_DIR WORK_DIR [tf32|fp32] [STEPS=400]");
            System.exit(2);
        }
        Path model = Path.of(args[0]), tokens = Path.of(args[1]), work = Path.of(args[2]);
        GemmMath math = GemmMath.parse(args.length > 3 ? args[3] : "tf32");
        int steps = args.length > 4 ? Integer.parseInt(args[4]) : 400;
        int windows = Integer.getInteger("shrink.distill.evalWindows", 200);
        Files.createDirectories(work);
        Ops cpu = Backends.select("cpu", 0);
        F32TrainOps f32 = new F32TrainOps(cpu, Runtime.getRuntime().availableProcessors());

        long t0 = System.nanoTime();
        Path pruned = work.resolve("pruned-2of4");
        PruneStage.compress(model, pruned, new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), null,
                List.of(), List.of(), 8), null, cpu, true, true);
        System.out.printf(Locale.ROOT, "pruned 2:4 by magnitude in %.1f s%n", (System.nanoTime() - t0) / 1e9);

        int[] stream = TokenWindows.read(tokens.resolve("train.safetensors"))[0];
        Map<String, int[]> evalIds = new LinkedHashMap<>();
        for (String d : new String[] {"heldout", "wikitext2"}) {
            evalIds.put(d, TokenWindows.read(tokens.resolve(d + ".safetensors"))[0]);
        }
        DistillStage.Config cfg = new DistillStage.Config(steps, 8, 8, 512, 3e-4, 20, 1.0, 1.0, 1.0, Losses.Kind.KL, 0,
                null, AdamW.Hyper.TORCH, 0, 0);
        String evalDevice = System.getProperty("shrink.distill.evalDevice", "cuda");
        Ops evalOps = Backends.select(evalDevice, 0);

        try (ModelDir tdir = ModelDir.open(model); ModelDir sdir = ModelDir.open(pruned);
             CudaTrainOps gpu = CudaTrainOps.open(0, math)) {
            System.out.println("training on " + gpu.name() + "; train.cu " + (gpu.module().fromCache() ? "from the cubin cache"
                    : String.format(Locale.ROOT, "compiled in %.0f ms", gpu.module().compileMillis()))
                    + "; evaluation on " + evalOps.name());
            Students students = Students.fromFolder(sdir, f32, false);
            Students.checkPair(tdir.dir(), tdir.config(), tdir.spec(), sdir.dir(), students.config(), sdir.spec());
            WeightSource teacherWeights = WeightSource.of(tdir.weights());
            DistillStage.Teacher teacher = new DistillStage.Teacher(teacherWeights, tdir.config(), tdir.spec());
            // -Dshrink.distill.evalBefore=false skips the teacher and the pruned student (they do not depend on the run)
            boolean before = !"false".equals(System.getProperty("shrink.distill.evalBefore"));
            Map<String, Double> tp = before ? ppl("teacher", teacherWeights, tdir, evalIds, evalOps, windows) : nan(evalIds);
            Map<String, Double> bp = before ? ppl("pruned 2:4 (before)", students.student().weights().asSource(f32), sdir,
                    evalIds, evalOps, windows) : nan(evalIds);

            DistillStage.Listener listener = new DistillStage.Listener() {
                @Override
                public void step(DistillStage.StepRecord r, int total) {
                    if (r.step() == 1 || r.step() % 50 == 0 || r.step() == total || r.step() <= 3) {
                        System.out.printf(Locale.ROOT, "step %4d  loss %.4f  grad norm %.3f  lr %.3g  %.1f s%n", r.step(),
                                r.loss(), r.gradNorm(), r.lr(), r.seconds());
                    }
                }
            };
            DistillStage.Result res = DistillStage.train(teacher, students.student(), stream, cfg, f32, gpu, null, false,
                    Map.of("teacher", model.toString()), listener);
            double secs = res.seconds();
            System.out.printf(Locale.ROOT, "trained %d steps of 8 x 512 in %.1f s (%.1f ms/step, %.0f tokens/s) on %s%n",
                    res.curve().size(), secs, 1000 * secs / res.curve().size(),
                    res.curve().size() * 8.0 * 512 / secs, res.backend());
            // the student as the written folder holds it: each tensor rounded to the source's dtype (bf16)
            Weights<float[]> trained = res.weights();
            WeightSource live = trained.asSource(f32);
            WeightSource written = new WeightSource() {
                @Override
                public boolean has(String name) {
                    return live.has(name);
                }

                @Override
                public float[] floats(String name) {
                    DType d = sdir.weights().has(name) ? sdir.weights().info(name).dtype() : DType.F32;
                    return StudentWriter.rounded(trained.get(name), d);
                }

                @Override
                public long[] shape(String name) {
                    return live.shape(name);
                }
            };
            Map<String, Double> ap = ppl("distilled (written)", written, sdir, evalIds, evalOps, windows);
            Map<String, Double> mp = before ? ppl("distilled (f32 masters)", live, sdir, evalIds, evalOps, windows)
                    : nan(evalIds);
            System.out.println();
            System.out.printf(Locale.ROOT, "%-10s %9s %9s %10s %10s  recovered%n", "", "teacher", "pruned", "distilled",
                    "f32");
            for (String d : evalIds.keySet()) {
                double t = tp.get(d), b = bp.get(d), a = ap.get(d);
                System.out.printf(Locale.ROOT, "%-10s %9.4f %9.4f %10.4f %10.4f  %5.1f%%%n", d, t, b, a, mp.get(d),
                        100 * (b - a) / (b - t));
            }
            System.out.println("curve (step loss grad-norm lr seconds):");
            for (DistillStage.StepRecord r : res.curve()) {
                if (r.step() == 1 || r.step() % 10 == 0) {
                    System.out.printf(Locale.ROOT, "  %d %.4f %.3f %.3g %.2f%n", r.step(), r.loss(), r.gradNorm(), r.lr(),
                            r.seconds());
                }
            }
        }
    }

    private static Map<String, Double> nan(Map<String, int[]> ids) {
        Map<String, Double> out = new LinkedHashMap<>();
        ids.keySet().forEach(k -> out.put(k, Double.NaN));
        return out;
    }

    private static Map<String, Double> ppl(String label, WeightSource w, ModelDir dir, Map<String, int[]> ids, Ops ops,
                                           int windows) {
        ModelConfig c = dir.config();
        CausalLM lm = CausalLM.load(w, c, dir.spec(), ops);
        Map<String, Double> out = new LinkedHashMap<>();
        for (Map.Entry<String, int[]> e : ids.entrySet()) {
            PplResult p = Perplexity.evaluate(lm, e.getKey(), e.getValue(), 512, windows, true);
            System.out.printf(Locale.ROOT, "%-24s %s%n", label, p.summary());
            out.put(e.getKey(), p.ppl());
        }
        return out;
    }
}
