package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import java.nio.file.Path;

/**
 * A folder of packed quantized linears seen as float weights: "X.weight" of a quantized linear
 * (one with "X.qweight") is dequantized from its packed tensors; every other tensor passes through.
 * Subclasses know one packing (GPTQ, AWQ GEMM).
 */
abstract class PackedWeightSource implements WeightSource {
    protected final WeightStore store;
    private final String format;

    PackedWeightSource(WeightStore store, String format) {
        this.store = store;
        this.format = format;
    }

    /** The quantized linear with tensor prefix {@code prefix}, unpacked and checked. */
    public abstract QuantizedLinear linear(String prefix);

    /** (N, K) of the quantized linear {@code prefix}, from the tensor headers alone. */
    protected abstract long[] dims(String prefix);

    public WeightStore store() {
        return store;
    }

    @Override
    public QuantizedLinear quantized(String prefix) {
        return isQuantized(prefix) ? linear(prefix) : null;
    }

    /** Whether {@code X.qweight} exists: X is a quantized linear. */
    public boolean isQuantized(String prefix) {
        return store.has(prefix + ".qweight");
    }

    /** The prefix X when {@code name} is "X.weight" of a quantized linear, else null. */
    private String quantizedPrefix(String name) {
        if (!name.endsWith(".weight")) {
            return null;
        }
        String x = name.substring(0, name.length() - ".weight".length());
        return isQuantized(x) ? x : null;
    }

    @Override
    public boolean has(String name) {
        return store.has(name) || quantizedPrefix(name) != null;
    }

    @Override
    public float[] floats(String name) {
        String x = quantizedPrefix(name);
        return x != null ? linear(x).dequantize() : store.floats(name);
    }

    @Override
    public long[] shape(String name) {
        String x = quantizedPrefix(name);
        return x != null ? dims(x) : store.info(name).shape();
    }

    @Override
    public String origin(String name) {
        String x = quantizedPrefix(name);
        if (x != null) {
            return store.fileOf(x + ".qweight").toString();
        }
        return store.has(name) ? store.fileOf(name).toString() : store.dir().toString();
    }

    /** "FILE: tensor 'T' problem". */
    protected ShrinkException bad(String tensor, String problem) {
        Path file = store.has(tensor) ? store.fileOf(tensor) : store.dir();
        return ShrinkException.at(file, "tensor '" + tensor + "' " + problem);
    }

    /** The header of a tensor a quantized layer needs, or an error naming the layer. */
    protected TensorInfo require(String tensor, String prefix) {
        if (!store.has(tensor)) {
            throw ShrinkException.at(store.fileOf(prefix + ".qweight"), format + " layer '" + prefix
                    + "' has a qweight but no '" + tensor + "'");
        }
        return store.info(tensor);
    }

    static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
