package dev.shrink.eval;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.CompressedSparse;
import dev.shrink.core.sparse.CompressedSparse.Format;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The weights of a compressed-tensors sparse-only folder ({@code quant_method: "compressed-tensors"}
 * with a {@code sparsity_config} of format {@code sparse-bitmask} or {@code sparse-24-bitmask}, as
 * llm-compressor and Shrink's {@link dev.shrink.core.sparse.CompressedSparseCheckpoint} write it) as
 * float32: a name {@code X.weight} for which {@code X.compressed} / {@code X.bitmask} exist is decoded
 * from {@code X.shape}, {@code X.compressed}, {@code X.bitmask} (layout in {@link CompressedSparse});
 * every other tensor passes through. As compressed-tensors' own loader does, which weights are
 * compressed is read from the tensors present, not from targets/ignore.
 *
 * <p>Quantized compressed-tensors folders ({@code config_groups}, a {@code format} such as
 * {@code pack-quantized}, sparse + quantized together, a quantized KV cache, transforms) and other
 * sparsity formats are refused with one error naming config.json.
 */
public final class CompressedSparseWeightSource implements WeightSource {

    private final WeightStore store;
    private final Format format;

    public CompressedSparseWeightSource(WeightStore store, Format format) {
        this.store = Objects.requireNonNull(store, "store");
        this.format = Objects.requireNonNull(format, "format");
        for (String name : store.names()) {
            String x = prefixOf(name);
            if (x != null && store.has(x + ".weight")) {
                throw ShrinkException.at(store.fileOf(name), "tensor '" + name + "' compresses '" + x
                        + ".weight', but the folder also holds '" + x + ".weight' itself");
            }
        }
    }

    /**
     * The reader for a compressed-tensors folder: this class for a sparse format, the plain tensors
     * for {@code sparsity_config.format: "dense"} or no sparsity config.
     *
     * @throws ShrinkException naming config.json for a quantized compressed-tensors folder or an
     *                         unknown sparsity format
     */
    public static WeightSource forModel(ModelDir dir) {
        Format f = format(dir.dir().resolve("config.json"), dir.config().raw().get("quantization_config"));
        return f == null ? WeightSource.of(dir.weights()) : new CompressedSparseWeightSource(dir.weights(), f);
    }

    /**
     * The sparse format a compressed-tensors quantization_config declares, or null when the weights are
     * stored dense.
     *
     * @throws ShrinkException naming {@code configFile} for anything but a sparse-only config
     */
    public static Format format(Path configFile, JsonNode qc) {
        if (qc == null || !qc.isObject()) {
            throw ShrinkException.at(configFile, "quantization_config is not a JSON object");
        }
        String supported = "; Shrink reads compressed-tensors sparse-only folders (sparsity_config.format "
                + Format.names() + ", or dense)";
        JsonNode groups = qc.get("config_groups");
        if (groups != null && !groups.isNull() && !groups.isEmpty()) {
            String fmt = qc.path("format").asText("?");
            throw ShrinkException.at(configFile, "compressed-tensors quantized weights (config_groups, format '" + fmt
                    + "'" + (hasSparsity(qc) ? ", together with a sparsity_config" : "") + ") are not supported" + supported);
        }
        JsonNode qf = qc.get("format");
        if (qf != null && !qf.isNull() && !qf.asText().equals("dense")) {
            throw ShrinkException.at(configFile, "compressed-tensors format '" + qf.asText() + "' is not supported" + supported);
        }
        JsonNode kv = qc.get("kv_cache_scheme");
        if (kv != null && !kv.isNull()) {
            throw ShrinkException.at(configFile, "compressed-tensors kv_cache_scheme (a quantized KV cache) is not supported"
                    + supported);
        }
        JsonNode transform = qc.get("transform_config");
        if (transform != null && !transform.isNull() && !transform.isEmpty()) {
            throw ShrinkException.at(configFile, "compressed-tensors transform_config (rotations) is not supported" + supported);
        }
        if (!hasSparsity(qc)) {
            return null;
        }
        JsonNode sc = qc.get("sparsity_config");
        if (!sc.isObject()) {
            throw ShrinkException.at(configFile, "quantization_config.sparsity_config is not a JSON object");
        }
        String name = sc.path("format").asText("");
        if (name.equals("dense")) {
            return null;
        }
        Format f = Format.fromConfigName(name);
        if (f == null) {
            throw ShrinkException.at(configFile, "compressed-tensors sparsity_config.format '" + name + "' is not supported"
                    + supported);
        }
        return f;
    }

    private static boolean hasSparsity(JsonNode qc) {
        JsonNode sc = qc.get("sparsity_config");
        return sc != null && !sc.isNull() && !sc.isEmpty();
    }

    /** X when {@code name} is "X.compressed" or "X.bitmask", else null. */
    private static String prefixOf(String name) {
        for (String suffix : new String[] {"." + CompressedSparse.COMPRESSED, "." + CompressedSparse.BITMASK}) {
            if (name.endsWith(suffix)) {
                return name.substring(0, name.length() - suffix.length());
            }
        }
        return null;
    }

    public Format format() {
        return format;
    }

    public WeightStore store() {
        return store;
    }

    /** The prefix X when {@code name} is "X.weight" of a compressed weight, else null. */
    private String compressedPrefix(String name) {
        if (!name.endsWith(".weight")) {
            return null;
        }
        String x = name.substring(0, name.length() - ".weight".length());
        return CompressedSparse.isCompressed(store, x) ? x : null;
    }

    /** Whether {@code X.weight} is stored compressed. */
    public boolean isCompressed(String weightName) {
        return compressedPrefix(weightName) != null;
    }

    @Override
    public boolean has(String name) {
        return store.has(name) || compressedPrefix(name) != null;
    }

    @Override
    public float[] floats(String name) {
        String x = compressedPrefix(name);
        return x != null ? CompressedSparse.read(store, x, format) : store.floats(name);
    }

    @Override
    public long[] shape(String name) {
        String x = compressedPrefix(name);
        if (x == null) {
            return store.info(name).shape();
        }
        int[] nk = CompressedSparse.dims(store, x);
        return new long[] {nk[0], nk[1]};
    }

    @Override
    public String origin(String name) {
        String x = compressedPrefix(name);
        if (x != null) {
            String t = store.has(x + "." + CompressedSparse.BITMASK) ? x + "." + CompressedSparse.BITMASK
                    : x + "." + CompressedSparse.COMPRESSED;
            return store.fileOf(t).toString();
        }
        return store.has(name) ? store.fileOf(name).toString() : store.dir().toString();
    }

    @Override
    public String toString() {
        return "CompressedSparseWeightSource[" + store.dir() + ", " + format.configName() + "]";
    }
}
