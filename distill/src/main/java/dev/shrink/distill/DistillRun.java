package dev.shrink.distill;

import dev.shrink.calib.CalibSource;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code shrink distill} and the pipeline's distill stage as one function: teacher folder and
 * student (a folder or a layer-dropped copy of the teacher) in, a trained student folder out, with
 * shrink-report.json and loss-curve.svg beside its weights. Resolves and checks the inputs, loads
 * the training text, runs {@link DistillStage}, optionally measures perplexity before and after
 * (through the {@link Evaluator} the caller gives, so this module needs no evaluation code), writes
 * the folder ({@link StudentWriter}) and removes the checkpoint once the folder is in place.
 */
public final class DistillRun {
    private DistillRun() {
    }

    /** The name of the loss-curve plot written beside the report. */
    public static final String CURVE_FILE = "loss-curve.svg";

    /**
     * What to run.
     *
     * @param teacher        the teacher folder (any format the {@link TeacherReader} reads)
     * @param student        the student folder, or null with dropLayers
     * @param dropLayers     teacher layers to drop for a layer-dropped student, or null with student
     * @param out            the output folder
     * @param config         the training options
     * @param data           training text sources ({@link TrainText})
     * @param field          JSON field / column of path sources (null: "text")
     * @param allowEvalText  allow training on evaluation text
     * @param keepZeros      mask every exact zero of every decoder linear, not only the recorded pruning's
     * @param checkpointDir  where checkpoints go (null: {@code <out>.checkpoint})
     * @param resume         continue from the checkpoint
     * @param keepCheckpoint leave the checkpoint after success
     * @param saveDtype      "source" (each tensor's own dtype), "bf16", "f16" or "f32"
     * @param reportHead     the report's first entries (stage, tool, backend, ...)
     */
    public record Request(Path teacher, Path student, List<Integer> dropLayers, Path out, boolean overwrite,
                          DistillStage.Config config, String data, String field, boolean allowEvalText, boolean keepZeros,
                          Path checkpointDir, boolean resume, boolean keepCheckpoint, String saveDtype,
                          Map<String, Object> reportHead) {
        public Request {
            if ((student == null) == (dropLayers == null)) {
                throw new ShrinkException(student == null
                        ? "give the student: --student DIR (e.g. a pruned model) or --drop-layers L[,L...] (a copy of the teacher)"
                        : "--student and --drop-layers exclude each other: give one");
            }
            if (!List.of("source", "bf16", "f16", "f32").contains(saveDtype)) {
                throw new ShrinkException("--save-dtype must be source, bf16, f16 or f32, got '" + saveDtype + "'");
            }
            dropLayers = dropLayers == null ? null : List.copyOf(dropLayers);
        }

        /** The checkpoint folder: the one given, or {@code <out>.checkpoint} beside the output. */
        public Path checkpoints() {
            if (checkpointDir != null) {
                return checkpointDir;
            }
            Path abs = out.toAbsolutePath().normalize();
            return abs.resolveSibling(abs.getFileName() + ".checkpoint");
        }
    }

    /** Opens a teacher folder as float32 weights (the CLI reads quantized folders through eval's readers). */
    @FunctionalInterface
    public interface TeacherReader {
        WeightSource open(ModelDir dir);
    }

    /** Measures perplexity of a model given as weights (the CLI uses eval's Perplexity). */
    @FunctionalInterface
    public interface Evaluator {
        List<Ppl> evaluate(String label, WeightSource weights, ModelConfig config, ArchitectureSpec spec, Tokenizer tok);
    }

    /** One perplexity figure with its protocol facts. */
    public record Ppl(String dataset, int seqlen, int windows, long predictions, double ppl) {
    }

    /**
     * What the run did.
     *
     * @param teacherPpl perplexity of the teacher (empty without an evaluator)
     * @param before     of the student before training
     * @param after      of the written student
     */
    public record Outcome(DistillStage.Result result, List<Ppl> teacherPpl, List<Ppl> before, List<Ppl> after,
                          Map<String, Object> report, DType savedAs) {
    }

    public static Outcome run(Request r, TeacherReader teacherReader, Evaluator evaluator, F32TrainOps ops,
                              DistillStage.Listener listener) {
        return run(r, teacherReader, evaluator, ops, null, listener);
    }

    /**
     * {@link #run(Request, TeacherReader, Evaluator, F32TrainOps, DistillStage.Listener)} with the
     * training on {@code device} (e.g. {@link CudaTrainOps}; null: on {@code ops}); loading, the
     * evaluations and writing stay on the CPU side.
     */
    public static Outcome run(Request r, TeacherReader teacherReader, Evaluator evaluator, F32TrainOps ops,
                              TrainOps<?> device, DistillStage.Listener listener) {
        List<Path> inputs = new ArrayList<>(CalibSource.inputPaths(r.data()));
        inputs.add(r.teacher());
        inputs.add(r.student());
        ModelFolderWriter.checkTarget(inputs, r.out(), r.overwrite(), "the distilled model");
        checkCheckpoints(r.checkpoints(), r.out(), inputs);
        try (ModelDir tdir = ModelDir.open(r.teacher());
             ModelDir sdir = r.student() == null ? null : ModelDir.open(r.student())) {
            tdir.spec().requireDense(tdir.dir(), "distilled");
            String noGpu = device == null ? null : noGpuKernel(tdir.config());
            if (noGpu != null) {
                throw ShrinkException.at(tdir.dir().resolve("config.json"), tdir.spec().family() + "'s " + noGpu
                        + " no GPU training kernel yet; distill it on the CPU (--device cpu)");
            }
            Students students = sdir != null ? Students.fromFolder(sdir, ops, r.keepZeros())
                    : Students.dropLayers(tdir, r.dropLayers(), ops);
            ModelDir source = sdir != null ? sdir : tdir;
            // room for the distilled folder before training: the source's size, scaled by the blocks kept
            ModelFolderWriter.checkSpace(r.out(), ModelFolderWriter.estimateBytes(source.weights(), n -> false, 0, 0)
                    / source.config().layers() * students.config().layers());
            Students.checkPair(tdir.dir(), tdir.config(), tdir.spec(), source.dir(), students.config(), source.spec());
            DistillStage.Config cfg = r.config();
            for (ModelDir m : new ModelDir[] {tdir, source}) {
                int window = m.config().shortestWindow();
                if (window > 0 && window < cfg.seqlen()) {
                    // the training forward and backward attend to every earlier key: refuse rather than train wrong
                    throw ShrinkException.at(m.dir().resolve("config.json"), "sliding_window " + window
                            + " is shorter than --seqlen " + cfg.seqlen() + "; distillation attends to all keys, so use"
                            + " --seqlen " + window + " or less");
                }
            }
            if (cfg.hiddenWeight() > 0) {
                cfg = withLayerMap(cfg, layerMap(cfg.layerMap(), students));
            }
            WeightSource teacherWeights = teacherReader.open(tdir);
            DistillStage.Teacher teacher = new DistillStage.Teacher(teacherWeights, tdir.config(), tdir.spec());

            int[] stream;
            List<Ppl> teacherPpl = List.of(), before = List.of();
            try (Tokenizer tok = source.tokenizer()) {
                stream = TrainText.stream(TrainText.documents(r.data(), r.field(), r.allowEvalText()), tok,
                        students.config().bosTokenId());
                if (evaluator != null) {
                    teacherPpl = evaluator.evaluate("teacher", teacherWeights, tdir.config(), tdir.spec(), tok);
                    before = evaluator.evaluate("student before", students.student().weights().asSource(ops),
                            students.config(), source.spec(), tok);
                }
            }
            Map<String, Object> info = new LinkedHashMap<>();
            info.put("teacher", tdir.dir().toAbsolutePath().normalize().toString());
            info.put("student", sdir != null ? sdir.dir().toAbsolutePath().normalize().toString()
                    : "drop-layers " + r.dropLayers());
            info.put("data", r.data());
            Path ckpt = r.checkpoints();
            DistillStage.Result result = DistillStage.train(teacher, students.student(), stream, cfg, ops, device, ckpt,
                    r.resume(), info, listener);

            DType dtype = switch (r.saveDtype()) {
                case "bf16" -> DType.BF16;
                case "f16" -> DType.F16;
                case "f32" -> DType.F32;
                default -> null;
            };
            List<Ppl> after = List.of();
            if (evaluator != null) {
                try (Tokenizer tok = source.tokenizer()) {
                    after = evaluator.evaluate("student after", written(result.weights(), source, students, dtype, ops),
                            students.config(), source.spec(), tok);
                }
            }
            Map<String, Object> report = report(r, cfg, students, result, stream, teacherPpl, before, after, dtype, source);
            String title = String.format(Locale.ROOT, "distill %s → %s: %d steps, batch %d × %d, lr %s, %s T=%s α=%s",
                    tdir.dir().getFileName(), sdir != null ? sdir.dir().getFileName() : "drop " + r.dropLayers(),
                    cfg.steps(), cfg.batch(), cfg.seqlen(), plain(cfg.lr()), cfg.loss().label(), plain(cfg.temperature()),
                    plain(cfg.alpha()));
            StudentWriter.write(source, students, result.weights(), dtype, report,
                    Map.of(CURVE_FILE, LossCurveSvg.render(result.curve(), title)), r.out(), r.overwrite());
            if (!r.keepCheckpoint()) {
                deleteCheckpoint(ckpt);
            }
            return new Outcome(result, teacherPpl, before, after, report, dtype);
        }
    }

    /** The weights exactly as the folder will hold them (rounded to each tensor's output dtype). */
    private static WeightSource written(Weights<float[]> w, ModelDir source, Students students, DType dtype,
                                        F32TrainOps ops) {
        WeightSource live = w.asSource(ops);
        var store = source.weights();
        return new WeightSource() {
            @Override
            public boolean has(String name) {
                return live.has(name);
            }

            @Override
            public float[] floats(String name) {
                DType d = dtype;
                if (d == null) {
                    String src = students.kept() == null ? name : sourceName(name, students, source);
                    // a part of a fused linear (Phi-3's q_proj) has the dtype of the stored fused tensor
                    src = dev.shrink.core.forward.FusedLinears.fuseNames(source.spec(), source.config(),
                            java.util.Set.of(src)).iterator().next();
                    d = store.has(src) ? store.info(src).dtype() : DType.F32;
                }
                return StudentWriter.rounded(w.get(name), d);
            }

            @Override
            public long[] shape(String name) {
                return live.shape(name);
            }
        };
    }

    private static String sourceName(String name, Students students, ModelDir source) {
        var spec = source.spec();
        for (int i = 0; i < students.kept().length; i++) {
            String prefix = spec.layer(i, "");
            if (name.startsWith(prefix)) {
                return spec.layer(students.kept()[i], name.substring(prefix.length()));
            }
        }
        return name;
    }

    /** The given map (student layer → teacher layer, −1 none) padded to the student's layers, or the default. */
    private static int[] layerMap(int[] given, Students students) {
        int L = students.config().layers();
        if (given == null) {
            return students.defaultLayerMap();
        }
        if (given.length > L) {
            throw new ShrinkException("--layer-map names student layer " + (given.length - 1) + "; the student has layers 0.."
                    + (L - 1));
        }
        int[] m = java.util.Arrays.copyOf(given, L);
        java.util.Arrays.fill(m, given.length, L, -1);
        return m;
    }

    private static DistillStage.Config withLayerMap(DistillStage.Config c, int[] map) {
        return new DistillStage.Config(c.steps(), c.batch(), c.microBatch(), c.seqlen(), c.lr(), c.warmup(), c.clip(),
                c.temperature(), c.alpha(), c.loss(), c.hiddenWeight(), map, c.adam(), c.seed(), c.checkpointEvery());
    }

    private static Map<String, Object> report(Request r, DistillStage.Config cfg, Students students,
                                              DistillStage.Result res, int[] stream, List<Ppl> teacherPpl,
                                              List<Ppl> before, List<Ppl> after, DType dtype, ModelDir source) {
        Map<String, Object> rep = new LinkedHashMap<>(r.reportHead() == null ? Map.of() : r.reportHead());
        rep.put("teacher", r.teacher().toAbsolutePath().normalize().toString());
        rep.put("student", r.student() != null ? r.student().toAbsolutePath().normalize().toString() : null);
        rep.put("drop_layers", r.dropLayers());
        rep.put("student_layers", students.config().layers());
        Map<String, Object> opts = new LinkedHashMap<>(cfg.identity());
        opts.put("micro_batch", cfg.microBatch());
        opts.put("checkpoint_every", cfg.checkpointEvery());
        Map<String, Object> adam = new LinkedHashMap<>(); // Map.of's order changes from run to run
        adam.put("beta1", cfg.adam().beta1());
        adam.put("beta2", cfg.adam().beta2());
        adam.put("eps", cfg.adam().eps());
        adam.put("weight_decay", cfg.adam().weightDecay());
        opts.put("adam", adam);
        opts.put("schedule", "linear warm-up, then cosine decay to 0 (transformers get_cosine_schedule_with_warmup)");
        rep.put("options", opts);
        Map<String, Object> data = new LinkedHashMap<>();
        data.put("sources", r.data());
        data.put("tokens", stream.length);
        data.put("sha256", TrainText.fingerprint(stream));
        data.put("windows", "random " + cfg.seqlen() + "-token windows, Python random.seed(" + cfg.seed() + ") randint draws");
        data.put("eval_text_allowed", r.allowEvalText());
        rep.put("data", data);
        Map<String, Object> train = new LinkedHashMap<>();
        train.put("steps", res.curve().size());
        train.put("resumed_from_step", res.resumedFrom());
        train.put("seconds", res.seconds());
        train.put("seconds_per_step", res.curve().isEmpty() ? null : res.seconds() / res.curve().size());
        train.put("tokens_per_second", res.seconds() > 0 ? (double) res.curve().size() * cfg.batch() * cfg.seqlen()
                / res.seconds() : null);
        train.put("steps_this_run", res.stepsThisRun());
        train.put("seconds_this_run", res.secondsThisRun());
        train.put("cpu_seconds_this_run", Double.isFinite(res.cpuSeconds()) ? res.cpuSeconds() : null);
        train.put("cpu_seconds_per_step", res.stepsThisRun() > 0 && Double.isFinite(res.cpuSeconds())
                ? res.cpuSeconds() / res.stepsThisRun() : null);
        train.put("parameters", res.parameters());
        train.put("masked_zeros", res.maskedZeros());
        train.put("masked_tensors", students.student().masks().size());
        train.put("backend", res.backend());
        rep.put("training", train);
        rep.put("saved_dtype", dtype == null ? "source (" + source.config().torchDtype() + ")" : dtype.safetensorsName());
        rep.put("note", "trained in float32 (master weights); the folder holds them rounded to the saved dtype "
                + "(round to nearest even); 'after' perplexities are of the written values");
        Map<String, Object> ppl = new LinkedHashMap<>();
        ppl.put("teacher", teacherPpl);
        ppl.put("before", before);
        ppl.put("after", after);
        rep.put("perplexity", ppl);
        rep.put("curve_file", CURVE_FILE);
        List<Map<String, Object>> curve = new ArrayList<>();
        for (DistillStage.StepRecord s : res.curve()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("step", s.step());
            m.put("loss", s.loss());
            m.put("kl", finiteOrNull(s.kl()));
            m.put("ce", finiteOrNull(s.ce()));
            m.put("hidden_mse", finiteOrNull(s.hidden()));
            m.put("grad_norm", s.gradNorm());
            m.put("lr", s.lr());
            m.put("seconds", s.seconds());
            curve.add(m);
        }
        rep.put("curve", curve);
        return rep;
    }

    /** 0.0003 rather than 3.0E-4, 1 rather than 1.0. */
    static String plain(double v) {
        return java.math.BigDecimal.valueOf(v).stripTrailingZeros().toPlainString();
    }

    private static Double finiteOrNull(double v) {
        return Double.isFinite(v) ? v : null;
    }

    /**
     * The checkpoint folder must not be, hold or lie inside an input or the output: it is written
     * during training and removed after success.
     */
    private static void checkCheckpoints(Path ckpt, Path out, List<Path> inputs) {
        SafeFiles.checkApart(ckpt, inputs, "the checkpoints");
        Path c = SafeFiles.realPath(ckpt), o = SafeFiles.realPath(out);
        if (c.startsWith(o) || o.startsWith(c)) {
            throw ShrinkException.at(ckpt, "is, holds or lies inside the output folder " + out
                    + "; choose another --checkpoint-dir");
        }
    }

    /** Removes the checkpoint file, then the folder if nothing else is in it (it may be a folder the user named). */
    private static void deleteCheckpoint(Path dir) {
        try {
            Files.deleteIfExists(DistillCheckpoint.file(dir));
            if (Files.isDirectory(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                try (var s = Files.list(dir)) {
                    if (s.findAny().isEmpty()) {
                        Files.delete(dir);
                    }
                }
            }
        } catch (IOException e) {
            throw ShrinkException.at(dir, "the distilled model is written, but its checkpoint could not be removed: "
                    + e.getMessage(), e);
        }
    }

    /**
     * What of a model {@link CudaTrainOps} has no kernel for, as "X has" / "X, Y have", or null: GeGLU (Gemma),
     * query_pre_attn_scalar's attention scale and soft-capped attention scores and logits (Gemma 2).
     */
    static String noGpuKernel(ModelConfig c) {
        List<String> what = new ArrayList<>();
        if (c.activation() != ModelConfig.Activation.SILU) {
            what.add("GeGLU");
        }
        if (Math.abs(c.attentionScale() * Math.sqrt(c.headDim()) - 1) > 1e-12) {
            what.add("query_pre_attn_scalar's attention scale");
        }
        if (c.attentionSoftcap() > 0 || c.finalSoftcap() > 0) {
            what.add("soft-capped attention scores and logits");
        }
        return what.isEmpty() ? null : String.join(", ", what) + (what.size() == 1 ? " has" : " have");
    }
}
