package dev.shrink.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.Objects;

/**
 * The weights of a GPTQ folder (AutoGPTQ, GPTQModel, Shrink; FORMATS.md "GPTQ") as float32: a
 * name {@code X.weight} for which {@code X.qweight} exists is dequantized from {@code X.qweight},
 * {@code X.qzeros}, {@code X.scales} and {@code X.g_idx}:
 * {@code w[n][k] = scales[g_idx[k]][n] · (q[n][k] − z[g_idx[k]][n])}; every other tensor passes
 * through from the folder's {@link WeightStore}.
 *
 * <p>Settings come from config.json's {@code quantization_config}, keys it lacks from
 * {@code quantize_config.json}: {@code bits} (2, 3, 4, 8), {@code group_size}, {@code sym},
 * {@code desc_act} and {@code checkpoint_format} ({@code "gptq"}, the default, is v1 whose zero
 * points are stored minus one; {@code "gptq_v2"} stores them as they are). A layer without
 * {@code g_idx} uses {@code k / group_size}; act-order {@code g_idx} is honoured as written.
 * Unsupported settings or shapes that do not fit together are a {@link ShrinkException} naming the
 * file and the tensor.
 */
public final class GptqWeightSource extends PackedWeightSource {

    /** The quantization settings of a GPTQ folder that reading needs. */
    public record Settings(int bits, int groupSize, boolean sym, boolean descAct, boolean v1, String checkpointFormat) {
    }

    private static final String FORMAT = "GPTQ";

    private final Settings settings;

    public GptqWeightSource(WeightStore store, Settings settings) {
        super(Objects.requireNonNull(store, "store"), FORMAT);
        this.settings = Objects.requireNonNull(settings, "settings");
    }

    /** A reader for a GPTQ model folder, its settings from config.json / quantize_config.json. */
    public static GptqWeightSource forModel(ModelDir dir) {
        return new GptqWeightSource(dir.weights(), settings(dir.dir(), dir.config().raw().get("quantization_config")));
    }

    /**
     * Reads the settings: the keys of {@code fromConfig} (config.json's quantization_config, may be
     * null), then those of {@code dir/quantize_config.json} for keys it lacks.
     *
     * @throws ShrinkException naming the file for a missing or unsupported setting
     */
    public static Settings settings(Path dir, JsonNode fromConfig) {
        Path configFile = dir.resolve("config.json");
        Path qcFile = dir.resolve("quantize_config.json");
        ObjectNode qcJson = null;
        if (Files.isRegularFile(qcFile)) {
            qcJson = StrictJson.readObject(qcFile, "file not found");
        }
        if (fromConfig != null && !fromConfig.isNull() && !fromConfig.isObject()) {
            throw ShrinkException.at(configFile, "quantization_config is not a JSON object");
        }
        Keys keys = new Keys(fromConfig != null && fromConfig.isObject() ? (ObjectNode) fromConfig : null,
                configFile, qcJson, qcFile);
        if (keys.config == null && keys.qc == null) {
            throw ShrinkException.at(configFile, "no quantization_config and no quantize_config.json: not a GPTQ folder");
        }

        JsonNode method = keys.get("quant_method");
        if (method != null && !method.asText().equalsIgnoreCase("gptq")) {
            throw ShrinkException.at(keys.where("quant_method"), "quant_method '" + method.asText()
                    + "' is not GPTQ");
        }
        JsonNode bitsNode = keys.get("bits");
        if (bitsNode == null) {
            throw ShrinkException.at(configFile, "quantization_config has no \"bits\"");
        }
        int bits = bitsNode.canConvertToInt() ? bitsNode.asInt(-1) : -1;
        if (!bitsNode.isIntegralNumber() || (bits != 2 && bits != 3 && bits != 4 && bits != 8)) {
            throw ShrinkException.at(keys.where("bits"), "GPTQ bits " + bitsNode + " is not supported (2, 3, 4, 8)");
        }
        JsonNode gsNode = keys.get("group_size");
        int groupSize = gsNode == null ? 128 : gsNode.asInt(0); // AutoGPTQ's default
        if (gsNode != null && (!gsNode.isIntegralNumber() || !gsNode.canConvertToInt() || (groupSize != -1 && groupSize <= 0))) {
            throw ShrinkException.at(keys.where("group_size"), "GPTQ group_size " + gsNode
                    + " is not supported (a positive number or -1)");
        }
        boolean sym = keys.bool("sym", true);
        boolean descAct = keys.bool("desc_act", false);
        JsonNode marlin = keys.get("is_marlin_format");
        if (marlin != null && !marlin.isNull() && !marlin.isBoolean()) {
            throw ShrinkException.at(keys.where("is_marlin_format"), "GPTQ is_marlin_format " + marlin + " is not true or false");
        }
        if (marlin != null && marlin.asBoolean(false)) {
            throw ShrinkException.at(keys.where("is_marlin_format"),
                    "is_marlin_format: the Marlin repacked GPTQ layout is not readable; use a plain GPTQ checkpoint");
        }
        String fmtKey = keys.get("checkpoint_format") != null ? "checkpoint_format" : "format";
        JsonNode fmtNode = keys.get(fmtKey);
        if (fmtNode != null && !fmtNode.isNull() && !fmtNode.isTextual()) {
            throw ShrinkException.at(keys.where(fmtKey), "GPTQ " + fmtKey + " " + fmtNode + " is not a string");
        }
        String format = fmtNode == null || fmtNode.isNull() ? "gptq" : fmtNode.asText().toLowerCase(Locale.ROOT);
        boolean v1 = switch (format) {
            case "gptq" -> true;
            case "gptq_v2" -> false;
            default -> throw ShrinkException.at(keys.where(fmtKey), "GPTQ " + fmtKey + " '" + fmtNode.asText()
                    + "' is not supported (gptq, gptq_v2)");
        };
        JsonNode pack = keys.get("pack_dtype");
        if (pack != null && !pack.isNull() && !pack.asText().replace("torch.", "").equals("int32")) {
            throw ShrinkException.at(keys.where("pack_dtype"), "GPTQ pack_dtype '" + pack.asText()
                    + "' is not supported (int32)");
        }
        return new Settings(bits, groupSize, sym, descAct, v1, format);
    }

    /** Keys of config.json's quantization_config first, then quantize_config.json's. */
    private record Keys(ObjectNode config, Path configFile, ObjectNode qc, Path qcFile) {
        JsonNode get(String key) {
            if (config != null && config.has(key) && !config.get(key).isNull()) {
                return config.get(key);
            }
            if (qc != null && qc.has(key) && !qc.get(key).isNull()) {
                return qc.get(key);
            }
            return null;
        }

        Path where(String key) {
            return config != null && config.has(key) && !config.get(key).isNull() ? configFile
                    : qc != null ? qcFile : configFile;
        }

        boolean bool(String key, boolean fallback) {
            JsonNode n = get(key);
            if (n == null) {
                return fallback;
            }
            if (!n.isBoolean()) {
                throw ShrinkException.at(where(key), "GPTQ " + key + " " + n + " is not true or false");
            }
            return n.asBoolean();
        }
    }

    public Settings settings() {
        return settings;
    }

    /** A quantized layer's dimensions, checked against each other from the headers alone. */
    private record Layout(int N, int K, int G, boolean hasGIdx) {
    }

    @Override
    protected long[] dims(String prefix) {
        Layout l = layout(prefix);
        return new long[] {l.N, l.K};
    }

    private Layout layout(String x) {
        int bits = settings.bits;
        String qwName = x + ".qweight", qzName = x + ".qzeros", scName = x + ".scales", giName = x + ".g_idx";
        TensorInfo qw = require(qwName, x);
        TensorInfo qz = require(qzName, x);
        TensorInfo sc = require(scName, x);
        if (qw.dtype() != DType.I32 || qw.rank() != 2) {
            throw bad(qwName, "is " + qw.dtype().safetensorsName() + " " + Arrays.toString(qw.shape())
                    + "; GPTQ qweight is I32 [K·bits/32, N]");
        }
        if (qz.dtype() != DType.I32 || qz.rank() != 2) {
            throw bad(qzName, "is " + qz.dtype().safetensorsName() + " " + Arrays.toString(qz.shape())
                    + "; GPTQ qzeros is I32 [G, N·bits/32]");
        }
        if (!sc.dtype().isFloating() || sc.rank() != 2) {
            throw bad(scName, "is " + sc.dtype().safetensorsName() + " " + Arrays.toString(sc.shape())
                    + "; GPTQ scales is F16 [G, N]");
        }
        long[] s = sc.shape();
        long G = s[0], N = s[1];
        long rows = qw.shape()[0];
        if (G <= 0 || N <= 0 || rows <= 0) {
            throw bad(scName, "has an empty shape " + Arrays.toString(s) + " (or qweight " + Arrays.toString(qw.shape()) + ")");
        }
        if (qw.shape()[1] != N) {
            throw bad(qwName, "has shape " + Arrays.toString(qw.shape()) + " but " + scName + " " + Arrays.toString(s)
                    + " says N = " + N);
        }
        if (rows * 32 % bits != 0) {
            throw bad(qwName, "has " + rows + " rows, which do not hold a whole number of " + bits + "-bit columns");
        }
        long K = rows * 32 / bits;
        boolean hasGIdx = store.has(giName);
        if (hasGIdx) {
            TensorInfo gi = store.info(giName);
            if (gi.dtype().isFloating() || gi.rank() != 1) {
                throw bad(giName, "is " + gi.dtype().safetensorsName() + " " + Arrays.toString(gi.shape())
                        + "; GPTQ g_idx is I32 [K]");
            }
            if (gi.shape()[0] != K) {
                throw bad(giName, "has " + gi.shape()[0] + " entries but " + qwName + " " + Arrays.toString(qw.shape())
                        + " holds K = " + K + " input columns at " + bits + " bits");
            }
        } else {
            if (settings.descAct) {
                throw ShrinkException.at(store.fileOf(qwName), "GPTQ layer '" + x
                        + "' has no g_idx, which desc_act (act-order) needs");
            }
            long expectedG = QuantizedLinear.groups((int) Math.min(K, Integer.MAX_VALUE), settings.groupSize);
            if (G != expectedG) {
                throw bad(scName, "has " + G + " groups but K = " + K + " with group_size " + settings.groupSize
                        + " makes " + expectedG + " (and there is no g_idx)");
            }
        }
        if (N * bits % 32 != 0) {
            throw bad(qzName, "cannot exist for N = " + N + " at " + bits + " bits (N·bits is not a multiple of 32)");
        }
        if (qz.shape()[0] != G || qz.shape()[1] != N * bits / 32) {
            throw bad(qzName, "has shape " + Arrays.toString(qz.shape()) + ", expected [" + G + ", " + (N * bits / 32)
                    + "] for " + scName + " " + Arrays.toString(s) + " at " + bits + " bits");
        }
        if (N * K > Integer.MAX_VALUE - 8) {
            throw bad(qwName, "dequantizes to " + N + " × " + K + " values, too many for one float array");
        }
        return new Layout((int) N, (int) K, (int) G, hasGIdx);
    }

    /**
     * The quantized linear {@code prefix}, unpacked: codes, fp16 scales as float, zero points (v1's
     * stored z − 1 turned back into z), g_idx (or {@code k / group_size}), bias when present.
     *
     * @throws ShrinkException if a tensor is missing, has the wrong dtype or a shape that does not fit
     */
    public QuantizedLinear linear(String prefix) {
        Layout l = layout(prefix);
        int bits = settings.bits;
        int[] codes = GptqPacking.unpackQweight(store.ints(prefix + ".qweight"), l.N, l.K, bits);
        int[] zeros = GptqPacking.unpackQzeros(store.ints(prefix + ".qzeros"), l.G, l.N, bits, settings.v1);
        float[] scales = store.floats(prefix + ".scales");
        int[] gIdx;
        if (l.hasGIdx) {
            gIdx = store.ints(prefix + ".g_idx");
            for (int k = 0; k < gIdx.length; k++) {
                if (gIdx[k] < 0 || gIdx[k] >= l.G) {
                    throw bad(prefix + ".g_idx", "entry " + k + " = " + gIdx[k] + " is outside the " + l.G
                            + " groups of " + prefix + ".scales");
                }
            }
        } else {
            gIdx = QuantizedLinear.sequentialGIdx(l.K, settings.groupSize);
        }
        float[] bias = null;
        if (store.has(prefix + ".bias")) {
            TensorInfo b = store.info(prefix + ".bias");
            if (!Arrays.equals(b.shape(), new long[] {l.N})) {
                throw bad(prefix + ".bias", "has shape " + Arrays.toString(b.shape()) + ", expected [" + l.N + "]");
            }
            bias = store.floats(prefix + ".bias");
        }
        // The record's group size only sizes G; a g_idx-driven file may have a G that its group_size
        // does not give (tools differ): keep the count the tensors have.
        int groupSize = settings.groupSize;
        if (QuantizedLinear.groups(l.K, groupSize) != l.G) {
            groupSize = l.G == 1 ? -1 : groupSizeFor(prefix, l.K, l.G);
        }
        return new QuantizedLinear(prefix, l.N, l.K, bits, groupSize, codes, scales, zeros, gIdx, bias);
    }

    /**
     * Linear {@code prefix}'s packed tensors as stored, checked as {@link #linear} checks them but not
     * unpacked: for the GPU, which dequantizes the codes itself. {@code gIdx} is null when the layer
     * has none or it is sequential (k / groupSize).
     */
    public record Packed(int N, int K, int bits, int groupSize, boolean v1, String qweight, String qzeros,
                         String scales, int[] gIdx, String bias) {
    }

    public Packed packed(String prefix) {
        Layout l = layout(prefix);
        int groupSize = settings.groupSize;
        if (QuantizedLinear.groups(l.K, groupSize) != l.G) {
            groupSize = l.G == 1 ? -1 : groupSizeFor(prefix, l.K, l.G);
        }
        int[] gIdx = null;
        if (l.hasGIdx) {
            gIdx = store.ints(prefix + ".g_idx");
            for (int k = 0; k < gIdx.length; k++) {
                if (gIdx[k] < 0 || gIdx[k] >= l.G) {
                    throw bad(prefix + ".g_idx", "entry " + k + " = " + gIdx[k] + " is outside the " + l.G
                            + " groups of " + prefix + ".scales");
                }
            }
            if (java.util.Arrays.equals(gIdx, QuantizedLinear.sequentialGIdx(l.K, groupSize))) {
                gIdx = null;
            }
        }
        String bias = null;
        if (store.has(prefix + ".bias")) {
            TensorInfo b = store.info(prefix + ".bias");
            if (!Arrays.equals(b.shape(), new long[] {l.N})) {
                throw bad(prefix + ".bias", "has shape " + Arrays.toString(b.shape()) + ", expected [" + l.N + "]");
            }
            bias = prefix + ".bias";
        }
        return new Packed(l.N, l.K, settings.bits, groupSize, settings.v1, prefix + ".qweight", prefix + ".qzeros",
                prefix + ".scales", gIdx, bias);
    }

    /** A group size that gives exactly G groups over K columns. */
    private int groupSizeFor(String prefix, int K, int G) {
        for (int gs = Math.max(1, K / G); gs <= K; gs++) {
            if (QuantizedLinear.groups(K, gs) == G) {
                return gs;
            }
        }
        throw bad(prefix + ".scales", "has " + G + " groups, which no group size makes of K = " + K + " columns");
    }

    @Override
    public String toString() {
        return "GptqWeightSource[" + store.dir() + ", " + settings + "]";
    }
}
