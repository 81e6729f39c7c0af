package dev.shrink.awq;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.AwqPacking;
import dev.shrink.core.quant.ModifiedTensors;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.transform.RotatedModel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Writes an AWQ model folder: AutoAWQ's "GEMM" checkpoint (FORMATS.md, "AWQ GEMM"), which vLLM
 * (awq, awq_marlin), transformers, LMDeploy/TurboMind, SGLang and TGI load; or, with
 * {@link Export#FAKE}, the same model dequantized into an ordinary fp16 folder.
 *
 * <p>For every tensor of the source folder, in the source's order: a quantized linear {@code X}
 * ({@code X.weight} in the source) becomes {@code X.qweight} (I32 [K, N/8]), {@code X.qzeros}
 * (I32 [G, N/8]) and {@code X.scales} (F16 [G, N]), packed by {@link AwqPacking}, plus {@code X.bias}
 * (F16 [N]) when it has one; FAKE writes {@code X.weight} F16 [N, K] = scales · (q − z) instead. A
 * tensor the AWQ scaling changed (norm weights, an unquantized previous linear) is written from its
 * new float values: F16 when the source holds it in 16 bits and every value fits, else F32. Every
 * other tensor is copied byte for byte.
 *
 * <p>GEMM's {@code config.json} is the source's with every key kept plus {@code torch_dtype: float16}
 * and {@code quantization_config: {"quant_method": "awq", "bits": 4, "group_size": G, "zero_point":
 * true, "version": "gemm", "modules_to_not_convert": null}} (the list of unquantized decoder
 * linears instead of null when some are left out, so that loaders keep them as plain linears).
 * The folder also gets {@code shrink-report.json} and the source's other files (tokenizer, ...); it
 * appears atomically ({@link ModelFolderWriter}).
 */
public final class AwqCheckpoint {
    /** Default shard limit of the weight files: 4 GiB. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 4L << 30;

    /** What is written. */
    public enum Export {
        /** AutoAWQ's packed GEMM checkpoint. */
        GEMM,
        /** The dequantized model in fp16, scales folded in: for tools that cannot read AWQ. */
        FAKE
    }

    private AwqCheckpoint() {
    }

    /**
     * Writes the AWQ folder {@code outDir}.
     *
     * @param source    the unquantized model (kept open while writing: its tensors are copied from the mapping)
     * @param quantized tensor prefix → its quantized linear (4-bit, groups of {@code groupSize})
     * @param modified  full tensor name → its new float values (same shape as in the source)
     * @param report    serialized with Jackson to shrink-report.json; null for none
     * @throws IllegalArgumentException if a map entry does not match the source or AWQ's layout
     * @throws ShrinkException          if the source is already quantized, the folder exists and is not
     *                                  empty (without overwrite), or on any write error
     */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized,
                             Map<String, float[]> modified, int groupSize, Export export, Object report,
                             boolean overwrite, long maxShardBytes) {
        write(source, outDir, quantized, modified, groupSize, export, report, overwrite, maxShardBytes, null);
    }

    /**
     * {@link #write(ModelDir, Path, Map, Map, int, Export, Object, boolean, long)} of a model that was
     * rotated before AWQ ({@code rotated}: the source as AWQ read it; null: not rotated): the tensors the
     * rotation changed are written from their new values ({@code modified}, AWQ's own changes, wins), an
     * untied head is added, and config.json gets the rotation's edits.
     *
     * <p>Linears a family's checkpoints store fused (Phi-3's q/k/v and gate/up) are given apart, as the
     * forward reads them, and written fused under the stored name ({@link FusedLinears#fuseQuantized}):
     * codes and zero points joined along N and packed once with AWQ's interleave, which gives each part's
     * own words side by side, as AutoAWQ (which quantizes qkv_proj as one linear) writes them.
     */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantizedApart,
                             Map<String, float[]> modified, int groupSize, Export export, Object report,
                             boolean overwrite, long maxShardBytes, RotatedModel rotated) {
        Objects.requireNonNull(modified, "modified");
        Objects.requireNonNull(quantizedApart, "quantized");
        Objects.requireNonNull(source, "source");
        if (rotated != null) {
            Map<String, float[]> all = new LinkedHashMap<>(rotated.modified(quantizedApart::containsKey));
            all.putAll(modified);
            modified = all;
        }
        modified = FusedLinears.fuseDense(source.spec(), source.config(), FusedLinears.of(source), modified);
        Map<String, QuantizedLinear> quantized = FusedLinears.fuseQuantized(source.spec(), source.config(), quantizedApart);
        Objects.requireNonNull(outDir, "outDir");
        Objects.requireNonNull(export, "export");
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
        }
        if (source.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(source.dir().resolve("config.json"),
                    "the source model is already quantized (it has a quantization_config)");
        }
        check(source.weights(), quantized, modified, groupSize);
        Map<String, float[]> finalModified = modified;
        ModelFolderWriter.write(source.dir(), outDir, overwrite, "the AWQ model", tmp -> {
            List<TensorData> tensors = tensors(source.weights(), quantized, finalModified, export);
            if (rotated != null) {
                tensors.addAll(rotated.addedTensors(source.weights()));
            }
            SafetensorsWriter.writeModel(tmp, tensors, maxShardBytes, null);
            ObjectNode config = config(source, quantizedApart, groupSize, export);
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), rotated == null ? config : rotated.editConfig(config));
            if (report != null) {
                ModelFolderWriter.writeReport(tmp, report);
            }
            ModelFolderWriter.copyOtherFiles(source.dir(), tmp);
        });
    }

    /** {@link #write} with 4 GiB shards. */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized,
                             Map<String, float[]> modified, int groupSize, Export export, Object report, boolean overwrite) {
        write(source, outDir, quantized, modified, groupSize, export, report, overwrite, DEFAULT_MAX_SHARD_BYTES);
    }

    private static void check(WeightStore store, Map<String, QuantizedLinear> quantized, Map<String, float[]> modified,
                              int groupSize) {
        for (Map.Entry<String, QuantizedLinear> e : quantized.entrySet()) {
            String x = e.getKey();
            QuantizedLinear q = Objects.requireNonNull(e.getValue(), x);
            q.checkReplaces(x, store, AwqQuantizer.BITS, groupSize);
            String why = AwqQuantizer.unfitReason(q.N(), q.K(), groupSize);
            if (why != null) {
                throw new IllegalArgumentException("quantized linear '" + x + "': " + why);
            }
            int[] expected = QuantizedLinear.sequentialGIdx(q.K(), groupSize);
            if (!Arrays.equals(expected, q.gIdx())) {
                throw new IllegalArgumentException("quantized linear '" + x + "' has a reordered g_idx, which AWQ cannot hold");
            }
        }
        ModifiedTensors.check(store, modified, quantized);
    }

    /** The output tensors in the source's order. */
    private static List<TensorData> tensors(WeightStore store, Map<String, QuantizedLinear> quantized,
                                            Map<String, float[]> modified, Export export) {
        List<TensorData> out = new ArrayList<>();
        for (String name : store.names()) {
            if (name.endsWith(".weight") && quantized.containsKey(QuantizedLinear.prefixOf(name))) {
                QuantizedLinear q = quantized.get(QuantizedLinear.prefixOf(name));
                String x = q.name();
                int N = q.N(), K = q.K(), G = q.groupCount();
                if (export == Export.GEMM) {
                    out.add(TensorData.ofInts(x + ".qweight", new long[] {K, N / 8}, AwqPacking.packQweight(q.codes(), N, K)));
                    out.add(TensorData.ofInts(x + ".qzeros", new long[] {G, N / 8}, AwqPacking.packQzeros(q.zeros(), G, N)));
                    out.add(TensorData.ofFloats(x + ".scales", new long[] {G, N}, q.scales(), DType.F16));
                } else {
                    out.add(TensorData.ofFloats(x + ".weight", new long[] {N, K}, dequantizeFp16Scales(q), DType.F16));
                }
                float[] bias = q.bias() != null ? q.bias()
                        : modified.containsKey(x + ".bias") ? modified.get(x + ".bias")
                        : store.has(x + ".bias") ? store.floats(x + ".bias") : null;
                if (bias != null) {
                    out.add(TensorData.ofFloats(x + ".bias", new long[] {N}, bias, DType.F16));
                }
            } else if (name.endsWith(".bias") && quantized.containsKey(name.substring(0, name.length() - ".bias".length()))) {
                continue; // written with its linear, as F16
            } else if (modified.containsKey(name)) {
                out.add(ModifiedTensors.tensor(store, name, modified.get(name)));
            } else {
                TensorInfo info = store.info(name);
                out.add(new TensorData(name, info.dtype(), info.shape(), store.data(name)));
            }
        }
        return out;
    }

    /** The layer's weight as the GEMM folder holds it: fp16 scales · (q − z). */
    static float[] dequantizeFp16Scales(QuantizedLinear q) {
        float[] s = q.scales().clone();
        for (int i = 0; i < s.length; i++) {
            s[i] = Float.float16ToFloat(Float.floatToFloat16(s[i]));
        }
        return new QuantizedLinear(q.name(), q.N(), q.K(), q.bits(), q.groupSize(), q.codes(), s, q.zeros(), q.gIdx(),
                q.bias()).dequantize();
    }

    /** The AutoAWQ quantization_config: keys in the order AutoAWQ writes them. */
    static ObjectNode quantizationConfig(int groupSize, List<String> notConverted) {
        ObjectNode qc = JsonNodeFactory.instance.objectNode();
        qc.put("quant_method", "awq");
        qc.put("bits", AwqQuantizer.BITS);
        qc.put("group_size", groupSize);
        qc.put("zero_point", true);
        qc.put("version", "gemm");
        if (notConverted.isEmpty()) {
            qc.putNull("modules_to_not_convert");
        } else {
            ArrayNode a = qc.putArray("modules_to_not_convert");
            notConverted.forEach(a::add);
        }
        return qc;
    }

    /** The source config.json with every key kept, fp16 dtype, and (GEMM) the quantization config. */
    private static ObjectNode config(ModelDir source, Map<String, QuantizedLinear> quantized, int groupSize, Export export) {
        ObjectNode cfg = source.config().raw().deepCopy();
        if (cfg.has("dtype")) {
            cfg.put("dtype", "float16");
        }
        cfg.put("torch_dtype", "float16");
        if (export == Export.GEMM) {
            cfg.set("quantization_config", quantizationConfig(groupSize, notConverted(source, quantized)));
        }
        return cfg;
    }

    /** The decoder linears left unquantized (full prefixes), in model order. */
    private static List<String> notConverted(ModelDir source, Map<String, QuantizedLinear> quantized) {
        return source.spec().notConverted(source.config(), quantized::containsKey);
    }
}
