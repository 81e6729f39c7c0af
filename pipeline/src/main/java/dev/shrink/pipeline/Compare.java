package dev.shrink.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.calib.CalibData;
import dev.shrink.calib.CalibSpec;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.Version;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.pipeline.CompareReport.Row;
import dev.shrink.pipeline.Recipe.CalibSettings;
import dev.shrink.pipeline.Recipe.Pipeline;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Runs a recipe: each pipeline's stages in order, each stage's output cached under
 * {@code <work-dir>/stages/<key>/} (see {@link Keys}), so that a prefix shared by several pipelines
 * runs once and an interrupted compare resumes where it stopped (a stage folder appears only when
 * complete: the writers are atomic); then each result is measured ({@link Measurer}, cached under
 * {@code <work-dir>/results/<key>.json}) and the reports are written ({@link ReportFiles}).
 *
 * <p>A pipeline whose stage or measurement fails with a {@link ShrinkException} is reported with its
 * error, and the others go on.
 */
public final class Compare {
    private Compare() {
    }

    /**
     * @param workDir where stages/, results/ and the reports go
     * @param only    pipeline names to run (empty: all); the baseline is measured whenever the recipe asks
     * @param device  the backend (null: the recipe's)
     * @param threads CPU threads (null: the recipe's)
     */
    public record Options(Path workDir, List<String> only, String device, Integer threads, boolean quiet, String command,
                          GateRequest gate) {
        public Options {
            only = List.copyOf(only);
        }

        /** Without a typed command (the reports show one built from these options) and without a gate. */
        public Options(Path workDir, List<String> only, String device, Integer threads, boolean quiet) {
            this(workDir, only, device, threads, quiet, null, null);
        }
    }

    /**
     * The gate to run before the reports are written, so that they hold its verdict.
     *
     * @param baseline the old report.json as given (for messages and the reports)
     * @param old      its contents ({@link ReportJson#readTree})
     */
    public record GateRequest(String baseline, JsonNode old, Gate.Limits limits) {
    }

    /** Runs the recipe with the real stages and writes report.json, report.md and report.html into the work dir. */
    public static CompareReport run(Recipe recipe, Options opt, PrintWriter out) {
        return run(recipe, opt, out, Stages::run);
    }

    /** {@link #run(Recipe, Options, PrintWriter)} with the given stage executor. */
    public static CompareReport run(Recipe recipe, Options opt, PrintWriter out, StageExecutor exec) {
        List<Pipeline> pipelines = select(recipe, opt.only());
        String device = opt.device() != null ? opt.device() : recipe.evaluation().device();
        int threads = opt.threads() != null ? opt.threads() : recipe.evaluation().threads();
        int nThreads = threads > 0 ? threads : Runtime.getRuntime().availableProcessors();
        Ops ops = Backends.select(device, nThreads);
        SafeFiles.checkApart(opt.workDir(), recipe.inputs(), "the compare work dir");
        Path work = opt.workDir().toAbsolutePath().normalize();
        Path stages = work.resolve("stages"), results = work.resolve("results");
        Path base = recipe.model();
        // The models first (config, weights, tokenizer; each distill stage's teacher): a bad model
        // is refused before anything is created in the work dir.
        String baseKey;
        Integer bos;
        Tokenizer tok;
        try (ModelDir dir = ModelDir.open(base)) {
            baseKey = Keys.modelKey(base);
            bos = dir.config().bosTokenId();
            tok = dir.tokenizer();
        }
        try {
            for (Pipeline p : pipelines) {
                for (StageSpec stage : p.stages()) {
                    if (stage instanceof StageSpec.Distill dist) {
                        try (ModelDir teacher = ModelDir.open(dist.teacher())) {
                            teacher.tokenizer().close();
                        }
                    }
                }
            }
            Files.createDirectories(stages);
            Files.createDirectories(results);
            // what killed runs left: unfinished stage folders, cache entries, reports (only dead owners')
            SafeFiles.recoverAll(stages);
            SafeFiles.recoverAll(results);
            SafeFiles.recoverAll(work);
        } catch (IOException e) {
            tok.close();
            throw ShrinkException.at(work, "cannot create the work dir: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            tok.close();
            throw e;
        }
        out.printf(Locale.ROOT, "compare %s: %s, %d pipeline%s%s, backend %s (%d threads), work dir %s%n",
                recipe.file().getFileName(), base, pipelines.size(), pipelines.size() == 1 ? "" : "s",
                recipe.baseline() ? " + baseline" : "", ops.name(), nThreads, work);
        out.flush();
        Measurer measurer = new Measurer(recipe.evaluation(), base, ops, opt.quiet(), out);
        Map<String, Object> evalSettings = evaluationSettings(recipe, measurer.seqlen());
        Map<CalibSettings, Drawn> windows = new HashMap<>();
        Map<Path, String> teacherKeys = new HashMap<>();
        List<Row> rows = new ArrayList<>();
        Map<String, Object> stageKeys = new LinkedHashMap<>();
        try (tok) {
            if (recipe.baseline()) {
                rows.add(measureRow(Recipe.BASELINE, List.of(), base, baseKey, baseKey, 0, 0, 0, measurer, evalSettings, ops,
                        nThreads, results, out));
            }
            for (Pipeline p : pipelines) {
                String key = baseKey;
                Path in = base;
                double seconds = 0;
                int run = 0, cached = 0;
                List<String> described = p.stages().stream().map(StageSpec::describe).toList();
                List<String> keys = new ArrayList<>();
                try {
                    for (int i = 0; i < p.stages().size(); i++) {
                        StageSpec stage = p.stages().get(i);
                        Drawn d = stage.calibration() == null ? null
                                : windows.computeIfAbsent(stage.calibration(), c -> draw(c, tok, bos, out));
                        String teacherKey = stage instanceof StageSpec.Distill dist
                                ? teacherKeys.computeIfAbsent(dist.teacher(), Keys::modelKey) : null;
                        String k = Keys.stageKey(key, stage, d == null ? null : d.fingerprint(), teacherKey);
                        keys.add(k);
                        Path dir = stages.resolve(k);
                        String label = String.format(Locale.ROOT, "[%s] stage %d/%d %s", p.name(), i + 1, p.stages().size(),
                                stage.kind());
                        if (Files.isDirectory(dir)) {
                            double s = StageRecord.seconds(stages, k);
                            seconds += s;
                            cached++;
                            out.printf(Locale.ROOT, "%s: cached (stages/%s, %.1f s when it ran)%n", label, shortKey(k), s);
                        } else {
                            out.printf(Locale.ROOT, "%s: running %s%n", label, stage.describe());
                            out.flush();
                            long t0 = System.nanoTime();
                            exec.run(stage, in, dir, d == null ? null : d.windows(), reportHead(stage, in, d, ops), ops,
                                    opt.quiet());
                            double s = (System.nanoTime() - t0) / 1e9;
                            if (!Files.isDirectory(dir)) {
                                throw new IllegalStateException("stage " + stage.kind() + " wrote no folder " + dir);
                            }
                            StageRecord.write(stages, new StageRecord(k, key, stage.kind(), stage.options(),
                                    d == null ? null : d.fingerprint(), s, Instant.now().truncatedTo(ChronoUnit.SECONDS).toString()));
                            seconds += s;
                            run++;
                            out.printf(Locale.ROOT, "%s: done in %.1f s (stages/%s)%n", label, s, shortKey(k));
                        }
                        out.flush();
                        key = k;
                        in = dir;
                    }
                    stageKeys.put(p.name(), keys);
                    rows.add(measureRow(p.name(), described, in, key, baseKey, seconds, run, cached, measurer, evalSettings, ops,
                            nThreads, results, out));
                } catch (ShrinkException e) {
                    String msg = e.getMessage().replace('\n', ' ').replace('\r', ' ');
                    out.printf(Locale.ROOT, "[%s] failed: %s%n", p.name(), msg);
                    out.flush();
                    rows.add(new Row(p.name(), described, null, null, seconds, run, cached, false, null, msg));
                }
            }
        }
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("evaluation", evalSettings);
        settings.put("calibration", calibMap(recipe.calibration()));
        settings.put("stage_keys", stageKeys);
        CompareReport report = new CompareReport(Version.tool(), Instant.now().truncatedTo(ChronoUnit.SECONDS).toString(),
                relative(work, recipe.file()), relative(work, base), baseKey,
                new CompareReport.Machine(System.getProperty("os.name") + " " + System.getProperty("os.version"),
                        System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(), Runtime.version().toString(),
                        ops.name(), nThreads, Runtime.getRuntime().maxMemory(), dev.shrink.kernels.cpu.VectorOps.vectorBits()),
                settings, rows, fronts(rows), ReportFiles.DEFINITIONS, opt.command() != null ? opt.command() : command(recipe, opt),
                relative(work, Path.of("")), null);
        if (opt.gate() != null) {
            Gate.Outcome g = Gate.check(ReportJson.tree(report), opt.gate().old(), opt.gate().limits());
            report = report.withGate(g.verdict(opt.gate().baseline(), opt.gate().limits()));
        }
        ReportFiles.writeAll(work, report);
        out.printf(Locale.ROOT, "wrote %s, report.md, report.html%n", work.resolve("report.json"));
        out.flush();
        return report;
    }

    private static List<Pipeline> select(Recipe recipe, List<String> only) {
        if (only.isEmpty()) {
            return recipe.pipelines();
        }
        List<String> names = recipe.pipelines().stream().map(Pipeline::name).toList();
        for (String o : only) {
            if (!names.contains(o)) {
                throw new ShrinkException("--only " + o + ": no such pipeline in " + recipe.file() + " (pipelines: "
                        + String.join(", ", names) + ")");
            }
        }
        return recipe.pipelines().stream().filter(p -> only.contains(p.name())).toList();
    }

    /** Calibration windows as drawn, with their fingerprint and how they were drawn. */
    record Drawn(int[][] windows, String fingerprint, CalibSettings settings, String sampling) {
    }

    private static Drawn draw(CalibSettings c, Tokenizer tok, Integer bos, PrintWriter out) {
        CalibData.Drawn d = CalibData.draw(new CalibSpec(c.dataset(), c.field(), c.samples(), c.seqlen(), c.seed(),
                c.tokens(), c.sampling()), tok, bos);
        if (d.note() != null) {
            out.println("  note: " + d.note());
        }
        return new Drawn(d.windows(), TokenWindows.fingerprint(d.windows()), c, d.sampling());
    }

    private static Map<String, Object> reportHead(StageSpec stage, Path input, Drawn d, Ops ops) {
        Map<String, Object> head = new LinkedHashMap<>();
        head.put("stage", stage.kind());
        head.put("tool", Version.tool());
        head.put("java", Runtime.version().toString());
        head.put("backend", ops.name());
        head.put("source_model", input.toAbsolutePath().normalize().toString());
        if (d != null) {
            Map<String, Object> calib = new LinkedHashMap<>();
            calib.put("source", d.settings().tokens() != null ? d.settings().tokens().toString() : d.settings().dataset());
            calib.put("sampling", d.sampling());
            calib.put("samples", d.windows().length);
            calib.put("seqlen", d.windows()[0].length);
            calib.put("seed", d.settings().seed());
            calib.put("fingerprint_sha256", d.fingerprint());
            head.put("calibration", calib);
        } else {
            head.put("calibration", null);
        }
        return head;
    }

    private static Row measureRow(String name, List<String> stages, Path model, String modelKey, String baseKey,
                                  double seconds, int run, int cached, Measurer measurer, Map<String, Object> evalSettings,
                                  Ops ops, int threads, Path results, PrintWriter out) {
        String rk = Keys.resultKey(modelKey, baseKey, evalSettings, ops.name(), threads);
        Path file = results.resolve(rk + ".json");
        Measures m = null;
        if (Files.isRegularFile(file)) {
            try {
                m = ReportJson.read(file, Measures.class);
                if (m.perplexity().stream().anyMatch(p -> p.windowNll() == null && p.windows() > 1)) {
                    out.printf(Locale.ROOT, "[%s] measures: cached without perplexity's per-window NLLs (an older Shrink), "
                            + "measuring again%n", name);
                    m = null;
                } else {
                    out.printf(Locale.ROOT, "[%s] measures: cached (results/%s.json)%n", name, shortKey(rk));
                }
            } catch (IOException | RuntimeException e) {
                out.printf(Locale.ROOT, "[%s] measures: cached file unreadable (%s), measuring again%n", name,
                        e.getMessage() == null ? e : e.getMessage().replace('\n', ' '));
            }
        }
        boolean fromCache = m != null;
        if (m == null) {
            out.printf(Locale.ROOT, "[%s] measuring: size, speed, continuations, perplexity, KL%n", name);
            out.flush();
            m = measurer.measure(model);
            ReportJson.writeAtomically(file, ReportJson.write(m));
        }
        out.printf(Locale.ROOT, "[%s] %s%n", name, ReportFiles.summary(m));
        out.flush();
        return new Row(name, stages, modelKey, relative(results.getParent(), model), seconds, run, cached, fromCache, m, null);
    }

    /** The settings the measurements depend on (part of their cache key), seqlen resolved. */
    static Map<String, Object> evaluationSettings(Recipe recipe, int seqlen) {
        Recipe.Evaluation e = recipe.evaluation();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("datasets", e.datasets());
        m.put("seqlen", seqlen);
        m.put("max_windows", e.maxWindows());
        m.put("kl_dataset", e.kl().dataset());
        m.put("kl_windows", e.kl().windows());
        m.put("prompts", e.prompts());
        m.put("max_new_tokens", e.maxNewTokens());
        m.put("speed_prefill_tokens", e.speed().prefillTokens());
        m.put("speed_decode_tokens", e.speed().decodeTokens());
        m.put("speed_repeats", e.speed().repeats());
        if (e.kvCache().quantized()) { // absent for fp16, so results measured before KV quantization existed stay cached
            m.put("kv_cache", e.kvCache().id());
        }
        return m;
    }

    private static Map<String, Object> calibMap(CalibSettings c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("dataset", c.dataset());
        m.put("field", c.field());
        m.put("samples", c.samples());
        m.put("seqlen", c.seqlen());
        m.put("seed", c.seed());
        m.put("tokens", c.tokens() == null ? null : c.tokens().toString());
        m.put("sampling", c.sampling());
        return m;
    }

    static CompareReport.Fronts fronts(List<Row> rows) {
        List<Row> ok = rows.stream().filter(Row::ok).filter(r -> !r.measures().perplexity().isEmpty()).toList();
        if (ok.isEmpty()) {
            return new CompareReport.Fronts(null, List.of(), List.of());
        }
        String dataset = ok.get(0).measures().perplexity().get(0).dataset();
        List<Pareto.Point> size = new ArrayList<>(), speed = new ArrayList<>();
        for (Row r : ok) {
            var p = r.measures().ppl(dataset);
            if (p == null) {
                continue;
            }
            // perplexity with its 95% interval (exact where unknown); decode speed with its min-max spread
            double lo = p.pplLow() != null ? p.pplLow() : p.ppl(), hi = p.pplHigh() != null ? p.pplHigh() : p.ppl();
            var sp = r.measures().speed();
            size.add(Pareto.Point.withYInterval(r.name(), r.measures().size().weightBytes(), p.ppl(), lo, hi));
            speed.add(new Pareto.Point(r.name(), -sp.decodeTokensPerSecond(), -Math.max(sp.decodeMax(), sp.decodeTokensPerSecond()),
                    -Math.min(sp.decodeMin(), sp.decodeTokensPerSecond()), p.ppl(), lo, hi));
        }
        return new CompareReport.Fronts(dataset, Pareto.front(size), Pareto.front(speed));
    }

    /** {@code p} relative to the work dir ("stages/KEY", "../model"); "." for the work dir itself. */
    static String relative(Path work, Path p) {
        Path abs = p.toAbsolutePath().normalize();
        try {
            String r = work.toAbsolutePath().normalize().relativize(abs).toString();
            return r.isEmpty() ? "." : r;
        } catch (IllegalArgumentException e) { // another root: no relative path exists
            return abs.toString();
        }
    }

    /** The command line of these options, for reports of a compare not started from the CLI. */
    static String command(Recipe recipe, Options opt) {
        List<String> a = new ArrayList<>(List.of("shrink", "compare", relative(Path.of(""), recipe.file()), "--work-dir",
                relative(Path.of(""), opt.workDir())));
        if (!opt.only().isEmpty()) {
            a.add("--only");
            a.add(String.join(",", opt.only()));
        }
        if (opt.device() != null) {
            a.add("--device");
            a.add(opt.device());
        }
        if (opt.threads() != null) {
            a.add("--threads");
            a.add(String.valueOf(opt.threads()));
        }
        return shellLine(a);
    }

    /** The words as one shell line: each quoted where the shell would split or expand it. */
    public static String shellLine(List<String> words) {
        StringBuilder sb = new StringBuilder();
        for (String w : words) {
            if (!sb.isEmpty()) {
                sb.append(' ');
            }
            sb.append(!w.isEmpty() && w.matches("[A-Za-z0-9_./:=%,+@-]+") ? w : "'" + w.replace("'", "'\\''") + "'");
        }
        return sb.toString();
    }

    static String shortKey(String key) {
        return key.substring(0, 12);
    }

    /** Reads a report.json written by an earlier compare (for the gate). */
    public static JsonNode readReport(Path file) {
        return ReportJson.readTree(file);
    }
}
