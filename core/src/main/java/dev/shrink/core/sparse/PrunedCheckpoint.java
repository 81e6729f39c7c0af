package dev.shrink.core.sparse;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Writes a pruned model as an ordinary dense folder (FORMATS.md, "Pruned models"): the zeros are
 * stored as exact zeros, so every loader reads it, and the sparsity is recorded in config.json under
 * {@code shrink.sparsity} ({@link SparsityRecord}) and in {@code shrink-report.json}.
 *
 * <p>For every tensor of the source, in the source's order: a replaced one ({@code X.weight}, a key of
 * the map) is written from its new float values in the source tensor's own dtype (BF16, F16 or F32;
 * zeros stay exact, kept 16-bit values round-trip unchanged); every other tensor is copied byte for
 * byte. {@code config.json} is the source's with every key kept and {@code shrink.sparsity} set; the
 * other files (tokenizer, generation config, ...) are copied. The folder appears atomically
 * ({@link ModelFolderWriter}): on any failure nothing is left behind.
 */
public final class PrunedCheckpoint {

    /** Weight files larger than this are sharded (with an index). */
    public static final long MAX_SHARD_BYTES = 4L << 30;

    private PrunedCheckpoint() {
    }

    /**
     * Refuses a source model that is quantized: a {@code quantization_config} in config.json or a
     * quantization tool's config file. Pruning packed integer weights is not supported.
     */
    public static void requireUnquantized(ModelDir source) {
        Path configFile = source.dir().resolve("config.json");
        if (source.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(configFile, "the model is quantized (it has a quantization_config); "
                    + "pruning a quantized model is not supported: prune the unquantized model, then quantize");
        }
        for (String f : ModelFolderWriter.QUANT_CONFIG_FILES) {
            if (Files.isRegularFile(source.dir().resolve(f))) {
                throw ShrinkException.at(source.dir().resolve(f), "the model is quantized; pruning a quantized "
                        + "model is not supported: prune the unquantized model, then quantize");
            }
        }
    }

    /**
     * Writes the pruned folder {@code outDir}.
     *
     * @param source    the unpruned model (kept open while writing: its tensors are copied from the mapping)
     * @param weights   tensor name (e.g. "model.layers.0.mlp.up_proj.weight") → its new values, W: [N, K] row-major
     * @param record    what config.json records under {@code shrink.sparsity}
     * @param report    serialized with Jackson to shrink-report.json; null for none
     * @param overwrite replace a non-empty {@code outDir} (only once the new folder is complete)
     * @throws ShrinkException for a quantized source, a map entry that does not match the source (name,
     *                         size, a non-float dtype), a non-empty outDir without overwrite, or any
     *                         write error; nothing is left behind then
     */
    public static void write(ModelDir source, Path outDir, Map<String, float[]> weights, SparsityRecord record,
                             Object report, boolean overwrite) {
        Objects.requireNonNull(source, "source");
        Objects.requireNonNull(outDir, "outDir");
        Objects.requireNonNull(weights, "weights");
        Objects.requireNonNull(record, "record");
        requireUnquantized(source);
        WeightStore store = source.weights();
        // the parts of a fused linear (Phi-3's q/k/v, gate/up) go back into the tensor the checkpoint stores
        Map<String, float[]> stored = FusedLinears.fuseDense(source.spec(), source.config(), FusedLinears.of(source), weights);
        for (Map.Entry<String, float[]> e : stored.entrySet()) {
            check(store, e.getKey(), Objects.requireNonNull(e.getValue(), e.getKey()));
        }
        ModelFolderWriter.write(source.dir(), outDir, overwrite, "the pruned model", tmp -> {
            SafetensorsWriter.writeModel(tmp, tensors(store, stored), MAX_SHARD_BYTES, null);
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), record.writeInto(source.config().raw()));
            if (report != null) {
                ModelFolderWriter.writeReport(tmp, report);
            }
            ModelFolderWriter.copyOtherFiles(source.dir(), tmp);
        });
    }

    /** The replaced tensor exists in the source, holds as many values, and is stored as BF16, F16 or F32. */
    private static void check(WeightStore store, String name, float[] values) {
        if (!store.has(name)) {
            throw ShrinkException.at(store.dir(), "no tensor '" + name + "' to replace in the weights");
        }
        TensorInfo info = store.info(name);
        if (info.numel() != values.length) {
            throw ShrinkException.at(store.fileOf(name), "tensor '" + name + "' has " + info.numel()
                    + " values, the pruned one " + values.length);
        }
        DType d = info.dtype();
        if (d != DType.BF16 && d != DType.F16 && d != DType.F32) {
            throw ShrinkException.at(store.fileOf(name), "tensor '" + name + "' is " + d.safetensorsName()
                    + "; pruned weights are written as BF16, F16 or F32 only");
        }
    }

    /** The output tensors in the source's order, replaced ones re-encoded in their dtype. */
    private static List<TensorData> tensors(WeightStore store, Map<String, float[]> weights) {
        List<TensorData> out = new ArrayList<>();
        for (String name : store.names()) {
            TensorInfo info = store.info(name);
            float[] w = weights.get(name);
            out.add(w != null ? TensorData.ofFloats(name, info.shape(), w, info.dtype())
                    : new TensorData(name, info.dtype(), info.shape(), store.data(name)));
        }
        return out;
    }
}
