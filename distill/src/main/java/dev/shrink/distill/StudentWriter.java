package dev.shrink.distill;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a trained student as an ordinary dense Hugging Face folder, atomically
 * ({@link ModelFolderWriter}: nothing appears unless complete).
 *
 * <p>Tensors follow the source folder's order (the student's folder, or the teacher's for a
 * layer-dropped copy, whose kept layers are renumbered and dropped ones left out). Trained tensors
 * are written from their float32 master weights in the source tensor's own dtype, or in
 * {@code dtype} when given: a bf16 source gets bf16 weights, rounded to nearest even as torch's
 * {@code .to(bfloat16)} rounds (so the folder's model differs from the float32 masters by that
 * rounding; {@link #rounded} gives exactly the written values). Zeros stay exact zeros in every
 * dtype. The parts of a fused linear (Phi-3's q|k|v, gate|up) are joined back into the tensor the
 * family's checkpoints store ({@link FusedLinears#fuseDense}). Other tensors are copied byte for byte. config.json is the source's, with the layer count
 * of a dropped copy, the dtype when changed, and {@code shrink.sparsity} with the zero fractions of
 * the trained weights; the tokenizer and other files are copied; shrink-report.json and extra
 * files (the loss-curve plot) are added.
 */
public final class StudentWriter {
    private StudentWriter() {
    }

    /**
     * @param source   the folder the student was read from (the teacher's for a dropped copy)
     * @param students where the student came from (the kept layers of a dropped copy)
     * @param trained  the trained weights
     * @param dtype    the dtype of every trained tensor, or null for each source tensor's own
     * @param report   serialized to shrink-report.json (null: none)
     * @param extra    file name → text, written beside the report (e.g. loss-curve.svg)
     * @throws ShrinkException for a non-float source tensor without a dtype, or any write error (nothing left behind)
     */
    public static void write(ModelDir source, Students students, Weights<float[]> trained, DType dtype, Object report,
                             Map<String, String> extra, Path outDir, boolean overwrite) {
        if (dtype != null && dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) {
            throw new IllegalArgumentException("dtype " + dtype);
        }
        WeightStore store = source.weights();
        Map<String, float[]> values = new LinkedHashMap<>();
        for (Weights.Entry<float[]> e : trained.entries()) {
            values.put(e.name(), e.value());
        }
        // a family that stores linears fused (Phi-3): the trained parts joined into the stored tensors
        WeightSource split = FusedLinears.of(source);
        values = FusedLinears.fuseDense(source.spec(), students.config(), students.kept() == null ? split
                : Students.renamed(split, source.spec(), students.kept()), values);
        List<TensorData> tensors = new ArrayList<>();
        for (String name : store.names()) {
            String out = outName(name, students, source);
            if (out == null) {
                continue; // a dropped layer
            }
            TensorInfo info = store.info(name);
            float[] v = values.get(out);
            if (v == null) {
                tensors.add(new TensorData(out, info.dtype(), info.shape(), store.data(name)));
                continue;
            }
            DType d = dtype != null ? dtype : info.dtype();
            if (d != DType.BF16 && d != DType.F16 && d != DType.F32) {
                throw ShrinkException.at(store.fileOf(name), "tensor '" + name + "' is " + d.safetensorsName()
                        + "; trained weights are written as BF16, F16 or F32 (choose one with --save-dtype)");
            }
            tensors.add(TensorData.ofFloats(out, info.shape(), v, d));
        }
        ObjectNode cfg = config(students.config(), students.sparsity(), trained, dtype);
        ModelFolderWriter.write(source.dir(), outDir, overwrite, "the distilled model", tmp -> {
            SafetensorsWriter.writeModel(tmp, tensors, PrunedCheckpoint.MAX_SHARD_BYTES, null);
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), cfg);
            if (report != null) {
                ModelFolderWriter.writeReport(tmp, report);
            }
            if (extra != null) {
                for (Map.Entry<String, String> e : extra.entrySet()) {
                    ModelFolderWriter.writeBytes(tmp.resolve(e.getKey()), e.getValue().getBytes(StandardCharsets.UTF_8));
                }
            }
            ModelFolderWriter.copyOtherFiles(source.dir(), tmp);
        });
    }

    /** The student's name of a source tensor, or null for a tensor of a dropped layer. */
    private static String outName(String name, Students students, ModelDir source) {
        if (students.kept() == null) {
            return name;
        }
        var spec = source.spec();
        for (int j = 0; j < source.config().layers(); j++) {
            String prefix = spec.layer(j, "");
            if (name.startsWith(prefix)) {
                for (int i = 0; i < students.kept().length; i++) {
                    if (students.kept()[i] == j) {
                        return spec.layer(i, name.substring(prefix.length()));
                    }
                }
                return null;
            }
        }
        return name;
    }

    /** The output config.json: the student's, dtype and sparsity updated. */
    private static ObjectNode config(ModelConfig cfg, SparsityRecord rec, Weights<float[]> trained, DType dtype) {
        ObjectNode raw = cfg.raw().deepCopy();
        if (dtype != null) {
            String name = switch (dtype) {
                case F32 -> "float32";
                case BF16 -> "bfloat16";
                case F16 -> "float16";
                default -> throw new IllegalStateException();
            };
            for (String key : List.of("torch_dtype", "dtype")) {
                if (raw.has(key)) {
                    raw.put(key, name);
                }
            }
        }
        if (rec != null) {
            Map<String, Double> layers = new LinkedHashMap<>();
            for (String layer : rec.layers().keySet()) {
                float[] w = trained.get(layer + ".weight");
                long zeros = 0;
                for (float f : w) {
                    zeros += f == 0f ? 1 : 0;
                }
                layers.put(layer, (double) zeros / w.length);
            }
            raw = new SparsityRecord(rec.method(), rec.pattern(), rec.scope(), layers).writeInto(raw);
        }
        return raw;
    }

    /**
     * The values a folder written by {@link #write} holds for {@code values}: rounded to the dtype
     * (bf16 or f16, round to nearest even) and read back; F32 unchanged.
     */
    public static float[] rounded(float[] values, DType dtype) {
        return switch (dtype) {
            case F32 -> values.clone();
            case BF16 -> {
                float[] r = new float[values.length];
                for (int i = 0; i < r.length; i++) {
                    r[i] = Floats.bf16ToFloat(Floats.floatToBf16(values[i]));
                }
                yield r;
            }
            case F16 -> {
                float[] r = new float[values.length];
                for (int i = 0; i < r.length; i++) {
                    r[i] = Floats.f16ToFloat(Floats.floatToF16(values[i]));
                }
                yield r;
            }
            default -> throw new IllegalArgumentException("dtype " + dtype);
        };
    }
}
