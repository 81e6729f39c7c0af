package dev.shrink.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.AwqPacking;
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
 * The weights of an AutoAWQ "GEMM" folder (AutoAWQ, Shrink; FORMATS.md "AWQ GEMM") as float32: a
 * name {@code X.weight} for which {@code X.qweight} exists is dequantized from {@code X.qweight}
 * (I32 [K, N/8]), {@code X.qzeros} (I32 [G, N/8]) and {@code X.scales} (F16 [G, N]), unpacked by
 * {@link AwqPacking}: {@code w[n][k] = scales[k / group][n] · (q[k][n] − z[k / group][n])}; every other
 * tensor passes through from the folder's {@link WeightStore}. AWQ folders have no g_idx.
 *
 * <p>Settings come from config.json's {@code quantization_config} (transformers' keys {@code bits},
 * {@code group_size}, {@code zero_point}, {@code version}), or, for older AutoAWQ folders without
 * one, from {@code quant_config.json} ({@code w_bit}, {@code q_group_size}, ...). Only 4-bit
 * zero-point GEMM checkpoints are readable; another version (GEMV, Marlin, ExLlama) or shapes that
 * do not fit together are a {@link ShrinkException} naming the file and the tensor.
 */
public final class AwqWeightSource extends PackedWeightSource {

    /** The quantization settings of an AWQ folder that reading needs. group −1: one group per row. */
    public record Settings(int bits, int groupSize, boolean zeroPoint, String version) {
    }

    /** AutoAWQ's older settings file, used when config.json has no quantization_config. */
    public static final String QUANT_CONFIG = "quant_config.json";

    private static final String FORMAT = "AWQ";

    private final Settings settings;

    public AwqWeightSource(WeightStore store, Settings settings) {
        super(Objects.requireNonNull(store, "store"), FORMAT);
        this.settings = Objects.requireNonNull(settings, "settings");
    }

    /** A reader for an AWQ model folder, its settings from config.json (or quant_config.json). */
    public static AwqWeightSource forModel(ModelDir dir) {
        return new AwqWeightSource(dir.weights(), settings(dir.dir(), dir.config().raw().get("quantization_config")));
    }

    /**
     * Reads the settings from {@code fromConfig} (config.json's quantization_config), or when that is
     * null, from {@code dir/quant_config.json}.
     *
     * @throws ShrinkException naming the file for a missing or unsupported setting
     */
    public static Settings settings(Path dir, JsonNode fromConfig) {
        Path file = dir.resolve("config.json");
        JsonNode qc = fromConfig;
        if (qc == null || qc.isNull()) {
            file = dir.resolve(QUANT_CONFIG);
            if (!Files.isRegularFile(file)) {
                throw ShrinkException.at(dir.resolve("config.json"), "no quantization_config and no " + QUANT_CONFIG
                        + ": not an AWQ folder");
            }
            qc = StrictJson.read(file, "file not found");
        }
        if (qc == null || !qc.isObject()) {
            throw ShrinkException.at(file, "the AWQ quantization config is not a JSON object");
        }
        ObjectNode o = (ObjectNode) qc;
        JsonNode method = o.get("quant_method");
        if (method != null && !method.isNull() && !method.asText().equalsIgnoreCase("awq")) {
            throw ShrinkException.at(file, "quant_method '" + method.asText() + "' is not AWQ");
        }
        JsonNode bitsNode = first(o, "bits", "w_bit");
        if (bitsNode == null) {
            throw ShrinkException.at(file, "the AWQ quantization config has no \"bits\"");
        }
        if (!bitsNode.isIntegralNumber() || !bitsNode.canConvertToInt() || bitsNode.asInt() != 4) {
            throw ShrinkException.at(file, "AWQ bits " + bitsNode + " is not supported (AWQ GEMM is 4-bit)");
        }
        JsonNode gsNode = first(o, "group_size", "q_group_size");
        int groupSize = gsNode == null ? 128 : gsNode.asInt(0); // AutoAWQ's default
        if (gsNode != null && (!gsNode.isIntegralNumber() || !gsNode.canConvertToInt() || (groupSize != -1 && groupSize <= 0))) {
            throw ShrinkException.at(file, "AWQ group_size " + gsNode + " is not supported (a positive number or -1)");
        }
        JsonNode zpNode = o.get("zero_point");
        boolean zeroPoint = zpNode == null || zpNode.isNull() || zpNode.asBoolean(true);
        if (zpNode != null && !zpNode.isNull() && !zpNode.isBoolean()) {
            throw ShrinkException.at(file, "AWQ zero_point " + zpNode + " is not true or false");
        }
        if (!zeroPoint) {
            throw ShrinkException.at(file, "AWQ zero_point false is not supported (only zero-point GEMM checkpoints)");
        }
        JsonNode vNode = o.get("version");
        if (vNode != null && !vNode.isNull() && !vNode.isTextual()) {
            throw ShrinkException.at(file, "AWQ version " + vNode + " is not a string");
        }
        String version = vNode == null || vNode.isNull() ? "gemm" : vNode.asText().toLowerCase(Locale.ROOT);
        if (!version.equals("gemm")) {
            throw ShrinkException.at(file, "AWQ version '" + vNode.asText()
                    + "' is not readable (only \"gemm\"; GEMV, Marlin and ExLlama packings differ)");
        }
        return new Settings(4, groupSize, true, version);
    }

    private static JsonNode first(ObjectNode o, String... keys) {
        for (String k : keys) {
            JsonNode n = o.get(k);
            if (n != null && !n.isNull()) {
                return n;
            }
        }
        return null;
    }

    public Settings settings() {
        return settings;
    }

    /** A quantized layer's dimensions, checked against each other from the headers alone. */
    private record Layout(int N, int K, int G, int groupSize) {
    }

    @Override
    protected long[] dims(String prefix) {
        Layout l = layout(prefix);
        return new long[] {l.N, l.K};
    }

    private Layout layout(String x) {
        String qwName = x + ".qweight", qzName = x + ".qzeros", scName = x + ".scales";
        TensorInfo qw = require(qwName, x);
        TensorInfo qz = require(qzName, x);
        TensorInfo sc = require(scName, x);
        if (qw.dtype() != DType.I32 || qw.rank() != 2) {
            throw bad(qwName, "is " + qw.dtype().safetensorsName() + " " + Arrays.toString(qw.shape())
                    + "; AWQ GEMM qweight is I32 [K, N/8]");
        }
        if (qz.dtype() != DType.I32 || qz.rank() != 2) {
            throw bad(qzName, "is " + qz.dtype().safetensorsName() + " " + Arrays.toString(qz.shape())
                    + "; AWQ GEMM qzeros is I32 [K/group, N/8]");
        }
        if (!sc.dtype().isFloating() || sc.rank() != 2) {
            throw bad(scName, "is " + sc.dtype().safetensorsName() + " " + Arrays.toString(sc.shape())
                    + "; AWQ GEMM scales is F16 [K/group, N]");
        }
        long K = qw.shape()[0], G = sc.shape()[0], N = sc.shape()[1];
        if (K <= 0 || G <= 0 || N <= 0) {
            throw bad(scName, "has an empty shape " + Arrays.toString(sc.shape()) + " (or qweight " + Arrays.toString(qw.shape()) + ")");
        }
        if (N % 8 != 0 || qw.shape()[1] * 8 != N) {
            throw bad(qwName, "has shape " + Arrays.toString(qw.shape()) + " but " + scName + " " + Arrays.toString(sc.shape())
                    + " says N = " + N + ", which packs into [K, " + (N / 8) + (N % 8 != 0 ? " (N not a multiple of 8)" : "") + "]");
        }
        long group = settings.groupSize == -1 ? K : settings.groupSize;
        if (K % group != 0 || K / group != G) {
            throw bad(scName, "has " + G + " groups but qweight holds K = " + K + " input rows, which group_size "
                    + settings.groupSize + " makes " + (K % group == 0 ? String.valueOf(K / group) : "no whole number of") + " groups");
        }
        if (qz.shape()[0] != G || qz.shape()[1] * 8 != N) {
            throw bad(qzName, "has shape " + Arrays.toString(qz.shape()) + ", expected [" + G + ", " + (N / 8) + "] for "
                    + scName + " " + Arrays.toString(sc.shape()));
        }
        if (N * K > Integer.MAX_VALUE - 8) {
            throw bad(qwName, "dequantizes to " + N + " × " + K + " values, too many for one float array");
        }
        return new Layout((int) N, (int) K, (int) G, settings.groupSize == -1 ? -1 : (int) group);
    }

    /**
     * The quantized linear {@code prefix}, unpacked: codes [N, K], fp16 scales as float [G, N], zero
     * points [G, N], the sequential group of each input column, bias when present.
     *
     * @throws ShrinkException if a tensor is missing, has the wrong dtype or a shape that does not fit
     */
    public QuantizedLinear linear(String prefix) {
        Layout l = layout(prefix);
        int[] codes = AwqPacking.unpackQweight(store.ints(prefix + ".qweight"), l.N, l.K);
        int[] zeros = AwqPacking.unpackQzeros(store.ints(prefix + ".qzeros"), l.G, l.N);
        float[] scales = store.floats(prefix + ".scales");
        float[] bias = null;
        if (store.has(prefix + ".bias")) {
            TensorInfo b = store.info(prefix + ".bias");
            if (!Arrays.equals(b.shape(), new long[] {l.N})) {
                throw bad(prefix + ".bias", "has shape " + Arrays.toString(b.shape()) + ", expected [" + l.N + "]");
            }
            bias = store.floats(prefix + ".bias");
        }
        return new QuantizedLinear(prefix, l.N, l.K, 4, l.groupSize, codes, scales, zeros,
                QuantizedLinear.sequentialGIdx(l.K, l.groupSize), bias);
    }

    @Override
    public String toString() {
        return "AwqWeightSource[" + store.dir() + ", " + settings + "]";
    }
}
