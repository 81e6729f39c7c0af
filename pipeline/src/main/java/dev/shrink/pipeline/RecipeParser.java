package dev.shrink.pipeline;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.shrink.core.transform.RotatedModel;
import dev.shrink.calib.CalibSource;
import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.hub.HubModel;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.util.InputFiles;
import dev.shrink.pipeline.Recipe.CalibSettings;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.pipeline.Recipe.Evaluation;
import dev.shrink.pipeline.Recipe.Kl;
import dev.shrink.pipeline.Recipe.Pipeline;
import dev.shrink.pipeline.Recipe.SpeedSettings;
import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.error.Mark;
import org.yaml.snakeyaml.error.MarkedYAMLException;
import org.yaml.snakeyaml.error.YAMLException;
import org.yaml.snakeyaml.events.AliasEvent;
import org.yaml.snakeyaml.events.DocumentStartEvent;
import org.yaml.snakeyaml.events.Event;
import org.yaml.snakeyaml.events.NodeEvent;

/**
 * Reads a {@link Recipe} from YAML, strictly: an unknown key anywhere is an error that names it,
 * where it is and the allowed keys; so are a value of the wrong type, a value out of range, a
 * missing required value, a duplicate key or pipeline name, and a stage after one whose output is
 * packed. Every error is one {@link ShrinkException} line starting with the recipe file.
 *
 * <p>Relative paths (the model, a tokens file, a dataset that is not a preset) are resolved against
 * the recipe file's folder. A model or distill teacher that is no folder there but looks like a Hugging
 * Face id ({@code org/name}, at the top-level {@code revision}, default main) is found in the Hub cache
 * or downloaded into it while the recipe is read.
 */
public final class RecipeParser {
    private RecipeParser() {
    }

    static final List<String> TOP = List.of("model", "revision", "calibration", "evaluation", "baseline", "pipelines");
    static final List<String> CALIBRATION = List.of("dataset", "field", "samples", "seqlen", "seed", "tokens", "sampling");
    static final List<String> EVALUATION = List.of("datasets", "seqlen", "max_windows", "kl", "prompts", "max_new_tokens",
            "speed", "device", "threads", "kv_cache");
    static final List<String> KL = List.of("dataset", "windows");
    static final List<String> SPEED = List.of("prefill_tokens", "decode_tokens", "repeats");
    static final List<String> PIPELINE = List.of("name", "stages");
    static final List<String> KINDS = List.of("gptq", "awq", "prune", "distill");
    static final List<String> GPTQ = List.of("method", "bits", "group_size", "sym", "act_order", "static_groups",
            "true_sequential", "damp", "mse", "awq_scales", "gptaq", "block_size", "batch", "calibration", "rotate",
            "rotate_seed", "rotate_heads");
    static final List<String> AWQ = List.of("bits", "group_size", "duo_scaling", "clip", "skip_unfit", "export", "batch",
            "calibration", "rotate", "rotate_seed", "rotate_heads");
    static final List<String> PRUNE = List.of("method", "pattern", "sparsity", "scope", "targets", "ignore", "batch",
            "calibration");

    static final List<String> DISTILL = List.of("teacher", "steps", "batch", "micro_batch", "seqlen", "lr", "warmup", "clip",
            "weight_decay", "temperature", "alpha", "loss", "hidden_weight", "data", "seed");

    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._+-]*");

    private static final YAMLMapper YAML = YAMLMapper.builder(YAMLFactory.builder().build())
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION).build();

    /** Reads and checks the recipe file. */
    public static Recipe read(Path file) {
        String text;
        try {
            text = InputFiles.readUtf8(file, InputFiles.JSON_MAX_BYTES);
        } catch (NoSuchFileException e) {
            throw ShrinkException.at(file, "no such recipe file");
        } catch (IOException e) {
            throw ShrinkException.at(file, "cannot read: " + e.getMessage(), e);
        }
        return parse(text, file);
    }

    /** Parses recipe text; {@code file} names it in messages and anchors relative paths. */
    public static Recipe parse(String yaml, Path file) {
        refuseAnchorsAndDocuments(yaml, file);
        JsonNode root;
        try {
            root = YAML.readTree(yaml);
        } catch (JsonProcessingException e) {
            String where = e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ", column "
                    + e.getLocation().getColumnNr() + ")";
            throw ShrinkException.at(file, "not valid YAML: " + e.getOriginalMessage().replace('\n', ' ') + where);
        }
        if (root == null || root.isMissingNode() || root.isNull()) {
            throw ShrinkException.at(file, "is empty; a recipe names a model and its pipelines");
        }
        Path dir = file.toAbsolutePath().normalize().getParent();
        Section top = Section.of(root, "the recipe", "at the top level", TOP, file);
        String revision = top.string("revision", null);
        Path model = model(dir, top.requiredString("model"), revision);
        if (revision != null && Files.exists(model) && model.equals(dir.resolve(top.requiredString("model")).normalize())) {
            throw ShrinkException.at(file, "'revision' applies to a model given as a Hugging Face id (org/name); "
                    + model + " is a local folder");
        }
        CalibSettings calib = calibration(top.section("calibration", "in calibration", CALIBRATION),
                new CalibSettings("c4", null, 128, 512, 0, null, null), dir);
        Evaluation eval = evaluation(top.section("evaluation", "in evaluation", EVALUATION), dir);
        boolean baseline = top.bool("baseline", true);
        List<Pipeline> pipelines = new ArrayList<>();
        Map<String, Integer> seen = new HashMap<>();
        List<JsonNode> items = top.list("pipelines");
        if (items == null || items.isEmpty()) {
            throw ShrinkException.at(file, "no pipelines: give 'pipelines: [{name: ..., stages: [...]}]' at the top level");
        }
        for (int i = 0; i < items.size(); i++) {
            Pipeline p = pipeline(items.get(i), i + 1, calib, model, dir, file);
            Integer before = seen.put(p.name(), i + 1);
            if (before != null) {
                throw ShrinkException.at(file, "duplicate pipeline name '" + p.name() + "' (pipelines " + before + " and "
                        + (i + 1) + ")");
            }
            if (baseline && p.name().equals(Recipe.BASELINE)) {
                throw ShrinkException.at(file, "pipeline name '" + Recipe.BASELINE + "' is the uncompressed model's; "
                        + "choose another");
            }
            pipelines.add(p);
        }
        return new Recipe(file, model, calib, eval, baseline, pipelines);
    }

    /** A model the recipe names: a folder relative to it, else a Hugging Face id (org/name) from the cache or the Hub. */
    private static Path model(Path dir, String value, String revision) {
        return HubModel.resolveArgument(dir.resolve(value).normalize(), value, revision, false);
    }

    /**
     * Recipes are one plain YAML document. Anchors and aliases are refused (Jackson reads an alias
     * as the plain string of its name, so {@code [&p "x", *p]} would silently become
     * {@code ["x", "p"]}), and so is a second document (Jackson would ignore it). Scans SnakeYAML's
     * events, which also reports a syntax error anywhere in the text with its line.
     */
    private static void refuseAnchorsAndDocuments(String yaml, Path file) {
        int documents = 0;
        try {
            for (Event e : new Yaml(new LoaderOptions()).parse(new StringReader(yaml))) {
                if (e instanceof AliasEvent a) {
                    throw ShrinkException.at(file, "YAML alias *" + a.getAnchor() + " " + where(e)
                            + ": recipes do not use anchors and aliases; write the value out");
                }
                if (e instanceof NodeEvent n && n.getAnchor() != null) {
                    throw ShrinkException.at(file, "YAML anchor &" + n.getAnchor() + " " + where(e)
                            + ": recipes do not use anchors and aliases; write the value out");
                }
                if (e instanceof DocumentStartEvent && ++documents > 1) {
                    throw ShrinkException.at(file, "a second YAML document starts " + where(e)
                            + ": a recipe is one document (remove the '---' and what follows, or merge them)");
                }
            }
        } catch (MarkedYAMLException e) {
            Mark m = e.getProblemMark() != null ? e.getProblemMark() : e.getContextMark();
            String at = m == null ? "" : " (line " + (m.getLine() + 1) + ", column " + (m.getColumn() + 1) + ")";
            String problem = e.getProblem() != null ? e.getProblem() : e.getContext();
            throw ShrinkException.at(file, "not valid YAML: " + String.valueOf(problem).replace('\n', ' ') + at);
        } catch (YAMLException e) {
            throw ShrinkException.at(file, "not valid YAML: " + String.valueOf(e.getMessage()).replace('\n', ' '));
        }
    }

    private static String where(Event e) {
        Mark m = e.getStartMark();
        return m == null ? "" : "at line " + (m.getLine() + 1) + ", column " + (m.getColumn() + 1);
    }

    private static CalibSettings calibration(Section s, CalibSettings base, Path dir) {
        if (s == null) {
            return base;
        }
        String dataset = s.string("dataset", base.dataset());
        if (s.has("dataset")) {
            dataset = dataset(dataset, CalibSource.PRESETS, dir);
        }
        String tokens = s.string("tokens", null);
        Path tokensFile = tokens != null ? dir.resolve(tokens).normalize() : base.tokens();
        String sampling = s.oneOf("sampling", base.sampling(), List.of("random", "blocks"));
        int samples = s.integer("samples", base.samples());
        int seqlen = s.integer("seqlen", base.seqlen());
        s.check(samples >= 1, "samples", "must be at least 1", samples);
        s.check(seqlen >= 1, "seqlen", "must be at least 1", seqlen);
        return new CalibSettings(dataset, s.string("field", base.field()), samples, seqlen,
                s.longValue("seed", base.seed()), tokensFile, sampling);
    }

    private static Evaluation evaluation(Section s, Path dir) {
        List<String> datasets = List.of("heldout");
        Integer seqlen = null;
        int maxWindows = 0, maxNew = 32, threads = 0;
        Kl kl = null;
        List<String> prompts = List.of();
        SpeedSettings speed = new SpeedSettings(128, 32, 3);
        String device = "auto";
        KvCacheType kvCache = KvCacheType.FP16;
        if (s != null) {
            if (s.has("datasets")) {
                datasets = new ArrayList<>();
                for (String d : s.strings("datasets")) {
                    datasets.add(dataset(d, EvalText.PRESETS, dir));
                }
                s.check(!datasets.isEmpty(), "datasets", "must name at least one set", "[]");
            }
            if (s.has("seqlen")) {
                seqlen = s.integer("seqlen", 0);
                s.check(seqlen >= 2, "seqlen", "must be at least 2", seqlen);
            }
            maxWindows = s.integer("max_windows", 0);
            s.check(maxWindows >= 0, "max_windows", "must be ≥ 0 (0: all)", maxWindows);
            Section k = s.section("kl", "in evaluation.kl", KL);
            if (k != null) {
                String d = k.has("dataset") ? dataset(k.string("dataset", null), EvalText.PRESETS, dir) : datasets.get(0);
                int w = k.integer("windows", 4);
                k.check(w >= 0, "windows", "must be ≥ 0 (0: no KL)", w);
                kl = new Kl(d, w);
            }
            if (s.has("prompts")) {
                prompts = s.strings("prompts");
            }
            maxNew = s.integer("max_new_tokens", 32);
            s.check(maxNew >= 1, "max_new_tokens", "must be at least 1", maxNew);
            Section sp = s.section("speed", "in evaluation.speed", SPEED);
            if (sp != null) {
                int pre = sp.integer("prefill_tokens", 128), dec = sp.integer("decode_tokens", 32), rep = sp.integer("repeats", 3);
                sp.check(pre >= 1, "prefill_tokens", "must be at least 1", pre);
                sp.check(dec >= 1, "decode_tokens", "must be at least 1", dec);
                sp.check(rep >= 1, "repeats", "must be at least 1", rep);
                speed = new SpeedSettings(pre, dec, rep);
            }
            device = s.string("device", "auto");
            if (s.has("kv_cache")) {
                String kv = s.string("kv_cache", "fp16");
                s.check(java.util.Set.of("fp16", "int8", "int4").contains(kv), "kv_cache", "must be fp16, int8 or int4", kv);
                kvCache = KvCacheType.parse(kv, "kv_cache");
            }
            threads = s.integer("threads", 0);
            s.check(threads >= 0 && threads <= Backends.MAX_THREADS, "threads",
                    "must be 0 (all cores) to " + Backends.MAX_THREADS, threads);
        }
        if (kl == null) {
            kl = new Kl(datasets.get(0), 4);
        }
        return new Evaluation(datasets, seqlen, maxWindows, kl, prompts, maxNew, speed, device, threads, kvCache);
    }

    private static Pipeline pipeline(JsonNode node, int index, CalibSettings calib, Path model, Path dir, Path file) {
        Section p = Section.of(node, "pipeline " + index, "in pipeline " + index, PIPELINE, file);
        String name = p.requiredString("name");
        if (!NAME.matcher(name).matches()) {
            throw ShrinkException.at(file, "pipeline name '" + name + "' must be letters, digits and . _ + - "
                    + "(starting with a letter or digit)");
        }
        String of = "of pipeline '" + name + "'";
        List<JsonNode> items = p.list("stages");
        if (items == null || items.isEmpty()) {
            throw ShrinkException.at(file, "pipeline '" + name + "' has no stages (give 'stages: [{gptq: {...}}, ...]')");
        }
        List<StageSpec> stages = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            JsonNode item = items.get(i);
            if (!item.isObject() || item.size() != 1) {
                throw ShrinkException.at(file, "stage " + (i + 1) + " " + of + " must be one mapping like {gptq: {...}} "
                        + "(kinds: " + String.join(", ", KINDS) + "), got " + describe(item));
            }
            String kind = item.fieldNames().next();
            if (!KINDS.contains(kind)) {
                throw ShrinkException.at(file, "unknown stage '" + kind + "' " + of + " (allowed: "
                        + String.join(", ", KINDS) + ")");
            }
            String where = "in stage " + kind + " " + of;
            JsonNode opts = item.get(kind);
            Section s = opts == null || opts.isNull() ? Section.empty(where, file)
                    : Section.of(opts, "stage " + kind + " " + of, where, switch (kind) {
                        case "gptq" -> GPTQ;
                        case "awq" -> AWQ;
                        case "distill" -> DISTILL;
                        default -> PRUNE;
                    }, file);
            StageSpec stage = switch (kind) {
                case "gptq" -> gptq(s, calib, dir);
                case "awq" -> awq(s, calib, dir);
                case "distill" -> distill(s, model, dir);
                default -> prune(s, calib, dir);
            };
            if (!stages.isEmpty() && stages.getLast().packedOutput()) {
                throw ShrinkException.at(file, "stage " + (i + 1) + " (" + kind + ") " + of + " follows "
                        + stages.getLast().kind() + ", whose output is packed: a quantizing stage must come last "
                        + "(awq with export: fake writes a float model that later stages can take)");
            }
            stages.add(stage);
        }
        return new Pipeline(name, stages);
    }

    private static CalibSettings stageCalibration(Section s, CalibSettings calib, String defaultSampling, Path dir) {
        CalibSettings c = calibration(s.section("calibration", "in the calibration of " + s.where().substring(3),
                CALIBRATION), calib, dir);
        return c.sampling() != null ? c : new CalibSettings(c.dataset(), c.field(), c.samples(), c.seqlen(), c.seed(),
                c.tokens(), defaultSampling);
    }

    private static StageSpec gptq(Section s, CalibSettings calib, Path dir) {
        String method = s.oneOf("method", "gptq", List.of("gptq", "rtn"));
        int bits = s.integer("bits", 4);
        s.check(bits == 2 || bits == 3 || bits == 4 || bits == 8, "bits", "must be 2, 3, 4 or 8", bits);
        int group = groupSize(s);
        boolean actOrder = s.bool("act_order", false);
        boolean staticGroups = s.bool("static_groups", false);
        s.check(!staticGroups || actOrder, "static_groups", "only changes anything with act_order: true", true);
        double damp = s.number("damp", 0.01);
        s.check(damp > 0 && damp < 1, "damp", "must be in (0, 1)", damp);
        int blockSize = s.integer("block_size", 128);
        s.check(blockSize >= 1, "block_size", "must be at least 1", blockSize);
        int batch = batch(s);
        boolean awqScales = s.bool("awq_scales", false);
        s.check(!awqScales || method.equals("gptq"), "awq_scales", "goes with method gptq only", true);
        boolean gptaq = s.bool("gptaq", false);
        s.check(!gptaq || method.equals("gptq"), "gptaq", "goes with method gptq only", true);
        return new StageSpec.Gptq(method, bits, group, s.bool("sym", true), actOrder, staticGroups,
                s.bool("true_sequential", true), damp, s.bool("mse", false), blockSize, batch,
                stageCalibration(s, calib, "random", dir), awqScales, gptaq, rotate(s));
    }

    private static StageSpec awq(Section s, CalibSettings calib, Path dir) {
        int bits = s.integer("bits", 4);
        s.check(bits == 4, "bits", "must be 4: AWQ GEMM checkpoints hold 4-bit weights only", bits);
        int group = groupSize(s);
        String export = s.oneOf("export", "gemm", List.of("gemm", "fake"));
        return new StageSpec.Awq(bits, group, s.bool("duo_scaling", true), s.bool("clip", true),
                s.bool("skip_unfit", true), export, batch(s), stageCalibration(s, calib, "blocks", dir), rotate(s));
    }

    /** {@code rotate: true} [{@code rotate_seed: N}, {@code rotate_heads: B}] of a quantizing stage, or null. */
    private static RotatedModel.Settings rotate(Section s) {
        boolean rotate = s.bool("rotate", false);
        s.check(rotate || !s.has("rotate_seed"), "rotate_seed", "goes with rotate: true", s.integer("rotate_seed", 0));
        s.check(rotate || !s.has("rotate_heads"), "rotate_heads", "goes with rotate: true", s.bool("rotate_heads", false));
        return rotate ? new RotatedModel.Settings(s.integer("rotate_seed", 0), s.bool("rotate_heads", false)) : null;
    }

    private static StageSpec prune(Section s, CalibSettings calib, Path dir) {
        String method = s.oneOf("method", null, List.of("magnitude", "wanda", "sparsegpt"));
        if (method == null) {
            throw ShrinkException.at(s.file(), "missing 'method' " + s.where() + " (magnitude, wanda or sparsegpt)");
        }
        String pattern = s.string("pattern", "unstructured").toLowerCase(Locale.ROOT).strip();
        double sparsity;
        if (pattern.contains(":")) {
            SparsityPattern.NofM nm;
            try {
                nm = SparsityPattern.parse(pattern);
            } catch (ShrinkException e) {
                throw ShrinkException.at(s.file(), "'pattern' " + s.where() + ": " + e.getMessage());
            }
            pattern = nm.label();
            int n = nm.n(), m = nm.m();
            double implied = 1 - (double) n / m;
            if (s.has("sparsity")) {
                double given = s.number("sparsity", implied);
                s.check(Math.abs(given - implied) < 1e-9, "sparsity", "contradicts pattern " + pattern + " (which keeps "
                        + n + " of " + m + ": sparsity " + implied + "); leave it out", given);
            }
            sparsity = implied;
        } else {
            s.check(pattern.equals("unstructured"), "pattern", "must be unstructured or N:M (e.g. 2:4)", pattern);
            if (!s.has("sparsity")) {
                throw ShrinkException.at(s.file(), "missing 'sparsity' " + s.where() + " (a fraction in (0, 1), e.g. 0.5)");
            }
            sparsity = s.number("sparsity", 0);
            s.check(sparsity > 0 && sparsity < 1, "sparsity", "must be in (0, 1)", sparsity);
        }
        String scope = s.oneOf("scope", null, List.of("layer", "row", "global"));
        List<String> targets = s.has("targets") ? s.strings("targets") : List.of();
        List<String> ignore = s.has("ignore") ? s.strings("ignore") : List.of();
        return new StageSpec.Prune(method, pattern, sparsity, scope, targets, ignore, batch(s),
                stageCalibration(s, calib, "random", dir));
    }

    /**
     * A distill stage: the CLI's defaults (the golden protocol's), the teacher the recipe's model
     * unless given (relative to the recipe), data presets kept as named and files made absolute.
     */
    private static StageSpec distill(Section s, Path model, Path dir) {
        Path teacher = s.has("teacher") ? model(dir, s.string("teacher", null), null) : model;
        int steps = s.integer("steps", 400);
        s.check(steps >= 1, "steps", "must be at least 1", steps);
        int batch = batch(s);
        int micro = s.integer("micro_batch", batch);
        s.check(micro >= 1 && batch % micro == 0, "micro_batch", "must divide batch " + batch, micro);
        int seqlen = s.integer("seqlen", 512);
        s.check(seqlen >= 2, "seqlen", "must be at least 2", seqlen);
        double lr = s.number("lr", 3e-4);
        s.check(lr > 0 && Double.isFinite(lr), "lr", "must be positive", lr);
        int warmup = s.integer("warmup", 20);
        s.check(warmup >= 0, "warmup", "must not be negative", warmup);
        double clip = s.number("clip", 1.0);
        s.check(clip >= 0 && Double.isFinite(clip), "clip", "must be 0 (off) or positive", clip);
        double wd = s.number("weight_decay", 0.01);
        s.check(wd >= 0 && Double.isFinite(wd), "weight_decay", "must not be negative", wd);
        double temperature = s.number("temperature", 1.0);
        s.check(temperature > 0 && Double.isFinite(temperature), "temperature", "must be positive", temperature);
        double alpha = s.number("alpha", 1.0);
        s.check(alpha >= 0 && alpha <= 1, "alpha", "must be in [0, 1]", alpha);
        String loss = s.oneOf("loss", "kl", List.of("kl", "reverse-kl"));
        double hidden = s.number("hidden_weight", 0);
        s.check(hidden >= 0 && Double.isFinite(hidden), "hidden_weight", "must be 0 (off) or positive", hidden);
        List<String> sources = new ArrayList<>();
        for (String src : s.string("data", DISTILL_DATA).split(",")) {
            s.check(!src.isBlank(), "data", "must be comma-separated sources", s.string("data", DISTILL_DATA));
            sources.add(dataset(src, DISTILL_PRESETS, dir));
        }
        return new StageSpec.Distill(teacher, steps, batch, micro, seqlen, lr, warmup, clip, wd, temperature, alpha, loss,
                hidden, String.join(",", sources), s.longValue("seed", 0));
    }

    /** The distill stage's default training text: the golden protocol's (dev.shrink.distill.TrainText.DEFAULT). */
    static final String DISTILL_DATA = dev.shrink.distill.TrainText.DEFAULT;
    /** Training-text presets: the calibration ones and the validation splits. */
    static final List<String> DISTILL_PRESETS = java.util.stream.Stream.concat(CalibSource.PRESETS.stream(),
            java.util.stream.Stream.of("wikitext2-valid", "ptb-valid")).toList();

    private static int groupSize(Section s) {
        int g = s.integer("group_size", 128);
        s.check(g == -1 || (g >= 8 && Integer.bitCount(g) == 1), "group_size",
                "must be -1 or a power of two ≥ 8 (32, 64, 128, ...)", g);
        return g;
    }

    private static int batch(Section s) {
        int b = s.integer("batch", 8);
        s.check(b >= 1, "batch", "must be at least 1", b);
        return b;
    }

    /** A preset name as it is (lower case); anything else a path relative to the recipe's folder. */
    private static String dataset(String value, List<String> presets, Path dir) {
        String key = value.strip().toLowerCase(Locale.ROOT);
        return presets.contains(key) ? key : dir.resolve(value.strip()).normalize().toString();
    }

    static String describe(JsonNode n) {
        if (n == null || n.isNull()) {
            return "nothing";
        }
        if (n.isObject()) {
            List<String> keys = new ArrayList<>();
            n.fieldNames().forEachRemaining(keys::add);
            return keys.isEmpty() ? "an empty mapping" : "a mapping with keys " + String.join(", ", keys);
        }
        if (n.isArray()) {
            return "a list";
        }
        String s = n.toString();
        return s.length() > 60 ? s.substring(0, 57) + "..." : s;
    }

    /** One mapping of the recipe, its unknown keys already refused; typed getters with defaults. */
    private record Section(ObjectNode node, String where, Path file) {
        static Section of(JsonNode node, String what, String where, List<String> allowed, Path file) {
            if (!(node instanceof ObjectNode obj)) {
                throw ShrinkException.at(file, what + " must be a mapping (key: value), got " + describe(node));
            }
            for (Iterator<String> it = obj.fieldNames(); it.hasNext(); ) {
                String key = it.next();
                if (!allowed.contains(key)) {
                    throw ShrinkException.at(file, "unknown key '" + key + "' " + where + " (allowed: "
                            + String.join(", ", allowed) + ")");
                }
            }
            return new Section(obj, where, file);
        }

        static Section empty(String where, Path file) {
            return new Section(YAML.createObjectNode(), where, file);
        }

        boolean has(String key) {
            JsonNode v = node.get(key);
            return v != null && !v.isNull();
        }

        /** The nested mapping {@code key}, or null when absent. */
        Section section(String key, String where, List<String> allowed) {
            return has(key) ? of(node.get(key), "'" + key + "' " + this.where, where, allowed, file) : null;
        }

        private ShrinkException wrongType(String key, String type) {
            return ShrinkException.at(file, "'" + key + "' " + where + " must be " + type + ", got " + describe(node.get(key)));
        }

        void check(boolean ok, String key, String rule, Object value) {
            if (!ok) {
                throw ShrinkException.at(file, "'" + key + "' " + where + " " + rule + ", got " + value);
            }
        }

        String requiredString(String key) {
            if (!has(key)) {
                throw ShrinkException.at(file, "missing '" + key + "' " + where);
            }
            return string(key, null);
        }

        String string(String key, String dflt) {
            if (!has(key)) {
                return dflt;
            }
            JsonNode v = node.get(key);
            if (!v.isTextual() && !v.isNumber()) {
                throw wrongType(key, "a string");
            }
            String s = v.asText();
            if (s.isBlank()) {
                throw wrongType(key, "a non-empty string");
            }
            return s;
        }

        String oneOf(String key, String dflt, List<String> allowed) {
            String v = string(key, dflt);
            if (v != null && !allowed.contains(v)) {
                throw ShrinkException.at(file, "'" + key + "' " + where + " must be one of " + String.join(", ", allowed)
                        + ", got " + describe(node.get(key)));
            }
            return v;
        }

        int integer(String key, int dflt) {
            if (!has(key)) {
                return dflt;
            }
            JsonNode v = node.get(key);
            if (!v.isIntegralNumber() || !v.canConvertToInt()) {
                throw wrongType(key, "an integer");
            }
            return v.intValue();
        }

        long longValue(String key, long dflt) {
            if (!has(key)) {
                return dflt;
            }
            JsonNode v = node.get(key);
            if (!v.isIntegralNumber() || !v.canConvertToLong()) {
                throw wrongType(key, "an integer");
            }
            return v.longValue();
        }

        double number(String key, double dflt) {
            if (!has(key)) {
                return dflt;
            }
            JsonNode v = node.get(key);
            if (!v.isNumber()) {
                throw wrongType(key, "a number");
            }
            return v.doubleValue();
        }

        boolean bool(String key, boolean dflt) {
            if (!has(key)) {
                return dflt;
            }
            JsonNode v = node.get(key);
            if (!v.isBoolean()) {
                throw wrongType(key, "true or false");
            }
            return v.booleanValue();
        }

        List<JsonNode> list(String key) {
            if (!has(key)) {
                return null;
            }
            JsonNode v = node.get(key);
            if (!v.isArray()) {
                throw wrongType(key, "a list");
            }
            List<JsonNode> out = new ArrayList<>();
            v.forEach(out::add);
            return out;
        }

        /** A list of strings; a single string is a list of one. */
        List<String> strings(String key) {
            JsonNode v = node.get(key);
            if (v != null && v.isTextual()) {
                return List.of(v.asText());
            }
            List<String> out = new ArrayList<>();
            for (JsonNode e : list(key)) {
                if (!e.isTextual() || e.asText().isBlank()) {
                    throw ShrinkException.at(file, "'" + key + "' " + where + " must be a list of strings, got an item "
                            + describe(e));
                }
                out.add(e.asText());
            }
            return out;
        }
    }
}
