package dev.shrink.gptq;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.ModifiedTensors;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.transform.RotatedModel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Writes a GPTQ model folder (FORMATS.md, "GPTQ") that AutoGPTQ / GPTQModel, transformers, vLLM,
 * SGLang and TGI load.
 *
 * <p>For every tensor of the source folder, in the source's order: a quantized linear {@code X}
 * ({@code X.weight} in the source, {@code X} a key of the map) becomes {@code X.qweight} (I32
 * [K·b/32, N]), {@code X.qzeros} (I32 [G, N·b/32]), {@code X.scales} (F16 [G, N]), {@code X.g_idx}
 * (I32 [K]) and {@code X.bias} (F16 [N], when the layer or the source has one); every other tensor is
 * copied byte for byte with its name, dtype and shape. {@code checkpoint_format} is {@code "gptq"}
 * (v1, zero points stored minus one) for symmetric 4- and 8-bit, {@code "gptq_v2"} otherwise (v1
 * cannot hold z = 0).
 *
 * <p>The folder also gets {@code config.json} (the source config with every key kept, plus
 * {@code quantization_config} and {@code torch_dtype: float16}), {@code quantize_config.json} (the same
 * quantization_config), {@code shrink-report.json} (when a report is given), and a copy of every other
 * regular file of the source folder (tokenizer, generation config, ...) except its weights, its index,
 * its config.json, quantize_config.json and shrink-report.json. Pickle weight files ({@code .bin},
 * {@code .pt}, ...) are not copied either: they would hold the unquantized model.
 *
 * <p>The folder appears atomically: everything is written into a sibling {@code <outDir>.tmp-<random>}
 * that is renamed to {@code outDir} only when complete; on any failure it is deleted and a
 * {@link ShrinkException} names the folder and the problem. An existing non-empty {@code outDir} is an
 * error unless {@code overwrite}, and is then replaced only after the new folder is complete (old one
 * renamed aside, new one renamed in, old one deleted).
 */
public final class GptqCheckpoint {

    /** Default shard limit of the weight files: 4 GiB. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 4L << 30;

    /** The quantization config written into a separate file beside config.json. */
    public static final String QUANTIZE_CONFIG = "quantize_config.json";

    /** The run report written beside the weights. */
    public static final String REPORT = ModelFolderWriter.REPORT;

    private GptqCheckpoint() {
    }

    /** {@link #write(ModelDir, Path, Map, GptqFormat, Object, boolean, long)} refusing a non-empty outDir, 4 GiB shards. */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized, GptqFormat format,
                             Object report) {
        write(source, outDir, quantized, format, report, false, DEFAULT_MAX_SHARD_BYTES);
    }

    /** {@link #write(ModelDir, Path, Map, GptqFormat, Object, boolean, long)} with 4 GiB shards. */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized, GptqFormat format,
                             Object report, boolean overwrite) {
        write(source, outDir, quantized, format, report, overwrite, DEFAULT_MAX_SHARD_BYTES);
    }

    /**
     * Writes the GPTQ folder {@code outDir}.
     *
     * @param source        the unquantized model (kept open while writing: its tensors are copied from the mapping)
     * @param quantized     tensor prefix (e.g. "model.layers.0.self_attn.q_proj") → its quantized linear
     * @param format        the quantization settings recorded in quantization_config
     * @param report        serialized with Jackson to shrink-report.json; null for none
     * @param overwrite     replace a non-empty {@code outDir} (only once the new folder is complete)
     * @param maxShardBytes weight file size limit; larger models are sharded with an index
     * @throws IllegalArgumentException if a map entry does not match the source or the format
     * @throws ShrinkException          if the folder exists and is not empty (without overwrite), or on any
     *                                  write error; nothing is left behind then
     */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized, GptqFormat format,
                             Object report, boolean overwrite, long maxShardBytes) {
        write(source, outDir, quantized, format, report, overwrite, maxShardBytes, null);
    }

    /**
     * {@link #write(ModelDir, Path, Map, GptqFormat, Object, boolean, long)}, recording {@code sparsity}
     * (SparseGPT pruned while quantizing) under config.json's {@code shrink.sparsity}; null keeps the
     * source's config as it is (a pruned source's own record included).
     */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantized, GptqFormat format,
                             Object report, boolean overwrite, long maxShardBytes, SparsityRecord sparsity) {
        write(source, outDir, quantized, Map.of(), format, report, overwrite, maxShardBytes, sparsity, null);
    }

    /**
     * {@link #write(ModelDir, Path, Map, GptqFormat, Object, boolean, long, SparsityRecord)} with float
     * tensors that replace the source's ({@link ModifiedTensors}: AWQ's scales folded into norms and
     * previous linears by {@code gptq --awq-scales}; a modified bias of a quantized linear is written as
     * that linear's bias), of a model that may have been rotated before quantizing ({@code rotated}: the
     * source as GPTQ read it; null: not rotated): every tensor the rotation changed and that is not
     * quantized (embedding, norms of 1, head, linears left in float) is written from its new values, an
     * untied head is added, and config.json gets the rotation's edits ({@code tie_word_embeddings: false}).
     * Where both change a tensor, {@code modified} (computed on the rotated weights) wins.
     *
     * <p>Linears a family's checkpoints store fused (Phi-3's q/k/v and gate/up) are given apart, as the
     * forward reads them, and written fused under the stored name ({@link FusedLinears#fuseQuantized}):
     * one {@code qkv_proj.qweight} whose columns are q's, k's and v's, qzeros and scales likewise, one
     * g_idx, as GPTQModel writes them and vLLM's Phi-3 loader reads them.
     *
     * @param quantizedApart tensor prefix → its quantized linear, the parts of a fused linear apart
     * @param modifiedApart full tensor name → its new values (same size as in the source; parts of a
     *                      fused linear by their own names)
     */
    public static void write(ModelDir source, Path outDir, Map<String, QuantizedLinear> quantizedApart,
                             Map<String, float[]> modifiedApart, GptqFormat format, Object report, boolean overwrite,
                             long maxShardBytes, SparsityRecord sparsity, RotatedModel rotated) {
        Objects.requireNonNull(source, "source");
        Objects.requireNonNull(modifiedApart, "modified");
        Objects.requireNonNull(outDir, "outDir");
        Objects.requireNonNull(quantizedApart, "quantized");
        Objects.requireNonNull(format, "format");
        Map<String, QuantizedLinear> quantized = FusedLinears.fuseQuantized(source.spec(), source.config(), quantizedApart);
        WeightSource apart = FusedLinears.of(source);
        Map<String, float[]> modified = FusedLinears.fuseDense(source.spec(), source.config(), apart, modifiedApart);
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
        }
        Path configFile = source.dir().resolve("config.json");
        if (source.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(configFile, "the source model is already quantized (it has a quantization_config)");
        }
        check(source.weights(), quantized, format);
        ModifiedTensors.check(source.weights(), modified, quantized);
        boolean v1 = isV1(format, quantized);

        boolean lmHead = quantized.containsKey(QuantizedLinear.prefixOf(source.spec().lmHead()));
        ModelFolderWriter.write(source.dir(), outDir, overwrite, "the GPTQ model", tmp -> {
            Map<String, float[]> changed = new java.util.LinkedHashMap<>(
                    rotated == null ? Map.of() : rotated.modified(quantizedApart::containsKey));
            changed.putAll(modifiedApart);
            changed = FusedLinears.fuseDense(source.spec(), source.config(), apart, changed);
            List<TensorData> tensors = tensors(source.weights(), quantized, changed, v1);
            if (rotated != null) {
                tensors.addAll(rotated.addedTensors(source.weights()));
            }
            SafetensorsWriter.writeModel(tmp, tensors, maxShardBytes, null);
            ObjectNode qc = quantizationConfig(format, v1, lmHead,
                    source.spec().notConverted(source.config(), quantizedApart::containsKey));
            ObjectNode config = config(source, qc);
            if (rotated != null) {
                rotated.editConfig(config);
            }
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), sparsity == null ? config : sparsity.writeInto(config));
            ModelFolderWriter.writeJson(tmp.resolve(QUANTIZE_CONFIG), qc);
            if (report != null) {
                ModelFolderWriter.writeReport(tmp, report);
            }
            ModelFolderWriter.copyOtherFiles(source.dir(), tmp);
        });
    }

    /** "gptq" (v1) or "gptq_v2": what {@link #write} records for these layers. */
    public static String checkpointFormat(GptqFormat format, Map<String, QuantizedLinear> quantized) {
        return isV1(format, quantized) ? "gptq" : "gptq_v2";
    }

    /**
     * v1 for symmetric 4- and 8-bit, whose zero point 2^(b−1) v1 stores as z − 1; v2 otherwise. A
     * symmetric layer with a zero point 0 (impossible for the usual symmetric quantizer) cannot be
     * stored in v1 either, so it also selects v2.
     */
    private static boolean isV1(GptqFormat format, Map<String, QuantizedLinear> quantized) {
        if (!format.sym() || (format.bits() != 4 && format.bits() != 8)) {
            return false;
        }
        for (QuantizedLinear q : quantized.values()) {
            for (int z : q.zeros()) {
                if (z < 1) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Every map entry names a linear of the source with the right shape, bits and group size, packable. */
    private static void check(WeightStore store, Map<String, QuantizedLinear> quantized, GptqFormat format) {
        for (Map.Entry<String, QuantizedLinear> e : quantized.entrySet()) {
            String x = e.getKey();
            QuantizedLinear q = Objects.requireNonNull(e.getValue(), x);
            q.checkReplaces(x, store, format.bits(), format.groupSize());
            if ((long) q.K() * q.bits() % 32 != 0 || (long) q.N() * q.bits() % 32 != 0) {
                throw new IllegalArgumentException("quantized linear '" + x + "' [" + q.N() + ", " + q.K()
                        + "] cannot be packed at " + q.bits() + " bits: N·bits and K·bits must be multiples of 32");
            }
            if (q.bias() == null && store.has(x + ".bias")
                    && !Arrays.equals(store.info(x + ".bias").shape(), new long[] {q.N()})) {
                throw new IllegalArgumentException("quantized linear '" + x + "': the source bias has shape "
                        + Arrays.toString(store.info(x + ".bias").shape()) + ", expected [" + q.N() + "]");
            }
        }
    }

    /** The output tensors in the source's order, quantized linears expanded in place of X.weight. */
    private static List<TensorData> tensors(WeightStore store, Map<String, QuantizedLinear> quantized,
                                            Map<String, float[]> modified, boolean v1) {
        List<TensorData> out = new ArrayList<>();
        for (String name : store.names()) {
            if (name.endsWith(".weight") && quantized.containsKey(QuantizedLinear.prefixOf(name))) {
                QuantizedLinear q = quantized.get(QuantizedLinear.prefixOf(name));
                String x = q.name();
                int N = q.N(), K = q.K(), b = q.bits(), G = q.groupCount();
                out.add(TensorData.ofInts(x + ".qweight", new long[] {(long) K * b / 32, N},
                        GptqPacking.packQweight(q.codes(), N, K, b)));
                out.add(TensorData.ofInts(x + ".qzeros", new long[] {G, (long) N * b / 32},
                        GptqPacking.packQzeros(q.zeros(), G, N, b, v1)));
                out.add(TensorData.ofFloats(x + ".scales", new long[] {G, N}, q.scales(), DType.F16));
                out.add(TensorData.ofInts(x + ".g_idx", new long[] {K}, q.gIdx()));
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

    /**
     * The quantization_config object, keys in the order AutoGPTQ / GPTQModel write them. Decoder
     * linears left in float are listed twice, as GPTQModel does: under {@code dynamic} as negative
     * rules ({@code "-:^NAME$": {}}, regular expressions matched from the start of a module's name;
     * vLLM and GPTQModel then build those modules unquantized), and under
     * {@code modules_to_not_convert} (transformers' loaders).
     */
    static ObjectNode quantizationConfig(GptqFormat f, boolean v1, boolean lmHead, List<String> notConverted) {
        ObjectNode qc = JsonNodeFactory.instance.objectNode();
        qc.put("quant_method", "gptq");
        qc.put("bits", f.bits());
        qc.put("group_size", f.groupSize());
        qc.put("desc_act", f.descAct());
        qc.put("sym", f.sym());
        qc.put("static_groups", f.staticGroups());
        qc.put("true_sequential", f.trueSequential());
        qc.put("damp_percent", f.dampPercent());
        qc.put("checkpoint_format", v1 ? "gptq" : "gptq_v2");
        qc.put("lm_head", lmHead);
        qc.put("pack_dtype", "int32");
        qc.putObject("meta").putArray("quantizer").add(f.quantizer());
        if (!notConverted.isEmpty()) {
            ObjectNode dynamic = qc.putObject("dynamic");
            notConverted.forEach(x -> dynamic.putObject("-:^" + x.replace(".", "\\.") + "$"));
            var list = qc.putArray("modules_to_not_convert");
            notConverted.forEach(list::add);
        }
        return qc;
    }

    /** The source config.json with every key kept, plus the quantization config and fp16 dtype. */
    private static ObjectNode config(ModelDir source, ObjectNode qc) {
        ObjectNode cfg = source.config().raw().deepCopy();
        if (cfg.has("dtype")) {
            cfg.put("dtype", "float16");
        }
        cfg.put("torch_dtype", "float16");
        cfg.set("quantization_config", qc.deepCopy());
        return cfg;
    }
}
