package dev.shrink.distill;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.sparse.SparsityRecord;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Where a student comes from, and the checks that a teacher can teach it.
 * <ul>
 *   <li>A model folder ({@link #fromFolder}): any unquantized folder of the teacher's family and
 *       vocabulary. When config.json records a pruning ({@code shrink.sparsity}), the exact zeros of
 *       the pruned linears at the start are its masks, kept zero after every step.</li>
 *   <li>A layer-dropped copy of the teacher ({@link #dropLayers}): the teacher's blocks except the
 *       dropped ones, renumbered; student block i starts as teacher block {@code kept[i]}, which is
 *       also the default layer map of the hidden-state loss.</li>
 * </ul>
 * Either way the weights are read as the forward reads them: a family's fused checkpoint tensors
 * (Phi-3's qkv_proj, gate_up_proj) split into their parts ({@link FusedLinears}); {@link StudentWriter}
 * joins them back.
 *
 * @param dir      the folder the student's weights are read from (the teacher for a layer-dropped copy)
 * @param config   the student's config (with the new layer count for a dropped copy)
 * @param kept     for a layer-dropped copy, the teacher layer of each student layer; null otherwise
 * @param student  the weights and masks to train
 * @param sparsity the source's pruning record, or null
 */
public record Students(Path dir, ModelConfig config, int[] kept, DistillStage.Student student, SparsityRecord sparsity) {

    private static final ObjectMapper JSON = new ObjectMapper();

    /** The default layer map: student layer i imitates teacher layer kept[i] (or i when nothing was dropped). */
    public int[] defaultLayerMap() {
        if (kept != null) {
            return kept.clone();
        }
        int[] m = new int[config.layers()];
        Arrays.setAll(m, i -> i);
        return m;
    }

    /**
     * A student read from a model folder.
     *
     * @param keepZeros keep every exact zero of every decoder linear (for students pruned by other
     *                  tools, whose config.json has no shrink.sparsity); otherwise only the linears
     *                  that shrink.sparsity lists are masked
     * @throws ShrinkException for a quantized folder or a malformed sparsity record
     */
    public static Students fromFolder(ModelDir dir, F32TrainOps ops, boolean keepZeros) {
        refuseQuantized(dir, "the student");
        SparsityRecord rec = SparsityRecord.fromConfig(dir.config().raw());
        Weights<float[]> w = Weights.load(FusedLinears.of(dir), dir.config(), dir.spec(), ops);
        Map<String, int[]> masks = masks(w, dir.spec(), rec, keepZeros);
        return new Students(dir.dir(), dir.config(), null, new DistillStage.Student(w, masks), rec);
    }

    /**
     * A copy of the teacher without the blocks {@code drop}, the others renumbered in order.
     *
     * @throws ShrinkException for a quantized teacher, a layer out of range, or nothing left
     */
    public static Students dropLayers(ModelDir teacher, List<Integer> drop, F32TrainOps ops) {
        refuseQuantized(teacher, "--drop-layers copies the teacher's layers, so the teacher");
        int L = teacher.config().layers();
        TreeSet<Integer> dropped = new TreeSet<>();
        for (int d : drop) {
            if (d < 0 || d >= L) {
                throw new ShrinkException("--drop-layers " + d + ": the teacher has layers 0.." + (L - 1));
            }
            if (!dropped.add(d)) {
                throw new ShrinkException("--drop-layers names layer " + d + " twice");
            }
        }
        if (dropped.size() >= L) {
            throw new ShrinkException("--drop-layers would drop all " + L + " layers");
        }
        int[] kept = new int[L - dropped.size()];
        for (int i = 0, j = 0; i < L; i++) {
            if (!dropped.contains(i)) {
                kept[j++] = i;
            }
        }
        ModelConfig cfg = withLayers(teacher.config(), kept, teacher.dir().resolve("config.json"));
        WeightSource src = renamed(FusedLinears.of(teacher), teacher.spec(), kept);
        Weights<float[]> w = Weights.load(src, cfg, teacher.spec(), ops);
        SparsityRecord rec = SparsityRecord.fromConfig(teacher.config().raw());
        SparsityRecord mapped = rec == null ? null : renameRecord(rec, kept, teacher.spec());
        Map<String, int[]> masks = masks(w, teacher.spec(), mapped, false);
        return new Students(teacher.dir(), cfg, kept, new DistillStage.Student(w, masks), mapped);
    }

    /** The config of a copy with the given teacher layers: num_hidden_layers (and per-layer lists) cut to them. */
    static ModelConfig withLayers(ModelConfig cfg, int[] kept, Path source) {
        ObjectNode raw = cfg.raw().deepCopy();
        raw.put("num_hidden_layers", kept.length);
        raw.fields().forEachRemaining(e -> {
            if (e.getValue() instanceof ArrayNode a && a.size() == cfg.layers() && e.getKey().startsWith("layer_")) {
                ArrayNode cut = JSON.createArrayNode();
                for (int k : kept) {
                    cut.add(a.get(k));
                }
                e.setValue(cut);
            }
        });
        if (raw.has(SparsityRecord.SHRINK_KEY)) {
            SparsityRecord rec = SparsityRecord.fromConfig(cfg.raw());
            if (rec != null) {
                raw = renameRecord(rec, kept, ArchitectureSpec.forArchitecture(cfg.architecture(), source)).writeInto(raw);
            }
        }
        return ModelConfig.parse(raw, source);
    }

    /** Tensor names of student layer i read from teacher layer kept[i]. */
    static WeightSource renamed(WeightSource src, ArchitectureSpec spec, int[] kept) {
        return new WeightSource() {
            private String map(String name) {
                String prefix = spec.layer(0, "").substring(0, spec.layer(0, "").length() - 2); // "model.layers."
                if (!name.startsWith(prefix)) {
                    return name;
                }
                String rest = name.substring(prefix.length());
                int dot = rest.indexOf('.');
                int i;
                try {
                    i = dot <= 0 ? -1 : Integer.parseInt(rest.substring(0, dot));
                } catch (NumberFormatException e) {
                    i = -1;
                }
                if (i < 0) {
                    return name;
                }
                return i < kept.length ? spec.layer(kept[i], rest.substring(dot + 1)) : name + " (no such student layer)";
            }

            @Override
            public boolean has(String name) {
                return src.has(map(name));
            }

            @Override
            public float[] floats(String name) {
                return src.floats(map(name));
            }

            @Override
            public long[] shape(String name) {
                return src.shape(map(name));
            }

            @Override
            public String origin(String name) {
                return src.origin(map(name));
            }
        };
    }

    private static SparsityRecord renameRecord(SparsityRecord rec, int[] kept, ArchitectureSpec spec) {
        Map<String, Double> layers = new LinkedHashMap<>();
        for (int i = 0; i < kept.length; i++) {
            String from = spec.layer(kept[i], "");
            for (Map.Entry<String, Double> e : rec.layers().entrySet()) {
                if (e.getKey().startsWith(from)) {
                    layers.put(spec.layer(i, e.getKey().substring(from.length())), e.getValue());
                }
            }
        }
        return new SparsityRecord(rec.method(), rec.pattern(), rec.scope(), layers);
    }

    /** The exact zeros of the masked linears: those the record lists, or every decoder linear with keepZeros. */
    private static Map<String, int[]> masks(Weights<float[]> w, ArchitectureSpec spec, SparsityRecord rec, boolean keepZeros) {
        List<String> names = new ArrayList<>();
        if (keepZeros) {
            for (int i = 0; i < w.config().layers(); i++) {
                for (ArchitectureSpec.Linear l : spec.linears()) {
                    names.add(spec.layer(i, l.name()) + ".weight");
                }
            }
        } else if (rec != null) {
            for (String layer : rec.layers().keySet()) {
                names.add(layer + ".weight");
            }
        }
        Map<String, int[]> masks = new LinkedHashMap<>();
        for (String n : names) {
            float[] p = w.get(n);
            if (p == null) {
                throw new ShrinkException("config.json shrink.sparsity lists '" + n.substring(0, n.length() - 7)
                        + "', which is not a linear of the student");
            }
            int zeros = 0;
            for (float f : p) {
                zeros += f == 0f ? 1 : 0;
            }
            int[] idx = new int[zeros];
            for (int i = 0, j = 0; i < p.length; i++) {
                if (p[i] == 0f) {
                    idx[j++] = i;
                }
            }
            if (idx.length > 0) {
                masks.put(n, idx);
            }
        }
        return masks;
    }

    /** Refuses a quantized folder: packed integer weights are not trained here. */
    public static void refuseQuantized(ModelDir dir, String who) {
        Path cfg = dir.dir().resolve("config.json");
        String method = dir.config().raw().path("quantization_config").path("quant_method").asText("");
        if (method.equals("compressed-tensors")) {
            throw ShrinkException.at(cfg, who + " is a compressed-tensors folder; distillation trains dense weights: "
                    + "write the pruned model with --save-format dense (the default) and distill that");
        }
        if (dir.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(cfg, who + " must be an unquantized model (it has a quantization_config); "
                    + "distill before quantizing (prune → distill → gptq)");
        }
        for (String f : ModelFolderWriter.QUANT_CONFIG_FILES) {
            if (Files.isRegularFile(dir.dir().resolve(f))) {
                throw ShrinkException.at(dir.dir().resolve(f), who + " must be an unquantized model; distill before quantizing");
            }
        }
    }

    /**
     * Refuses a teacher and a student that cannot be compared token by token: another family, another
     * vocabulary size, or another tokenizer (tokenizer.json's model and added tokens).
     */
    public static void checkPair(Path teacherDir, ModelConfig teacher, ArchitectureSpec teacherSpec,
                                 Path studentDir, ModelConfig student, ArchitectureSpec studentSpec) {
        if (!teacherSpec.family().equals(studentSpec.family())) {
            throw new ShrinkException("teacher " + teacherDir + " is a " + teacherSpec.family() + " model, student "
                    + studentDir + " a " + studentSpec.family() + " one; distillation needs one family");
        }
        if (teacher.vocab() != student.vocab()) {
            throw new ShrinkException("teacher " + teacherDir + " has a vocabulary of " + teacher.vocab() + " tokens, student "
                    + studentDir + " one of " + student.vocab() + "; distillation compares them token by token");
        }
        Path tt = teacherDir.resolve("tokenizer.json"), st = studentDir.resolve("tokenizer.json");
        if (Files.isRegularFile(tt) && Files.isRegularFile(st)) {
            JsonNode a = tokenizerVocab(tt), b = tokenizerVocab(st);
            if (!a.equals(b)) {
                throw new ShrinkException("teacher " + teacherDir + " and student " + studentDir
                        + " have different tokenizers (tokenizer.json vocabularies differ); distillation needs one vocabulary");
            }
        }
    }

    private static JsonNode tokenizerVocab(Path file) {
        JsonNode root = StrictJson.read(file, "no such tokenizer");
        ObjectNode o = JSON.createObjectNode();
        o.set("model", root.path("model").path("vocab"));
        o.set("added", root.path("added_tokens"));
        return o;
    }
}
