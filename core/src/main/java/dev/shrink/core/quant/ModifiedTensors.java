package dev.shrink.core.quant;

import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import java.util.Map;

/**
 * Float tensors that a quantizer changed besides the linears it packs, written in place of the
 * source's (AWQ's scales folded into norms and previous linears: the AWQ writer, and the GPTQ writer
 * for {@code gptq --awq-scales}). One rule for both writers: a modified tensor must exist in the source
 * with the same number of values, must not be a packed linear's weight, and is written under its
 * source name and shape, in fp16 when the source is 16-bit and every value fits, else in fp32
 * ({@link TensorData#ofChangedFloats}, the rule the rotation's tensors follow too).
 */
public final class ModifiedTensors {
    private ModifiedTensors() {
    }

    /**
     * @throws IllegalArgumentException when an entry is not in the source, has another size, or is the
     *                                  weight of a linear in {@code quantized}
     */
    public static void check(WeightStore store, Map<String, float[]> modified, Map<String, QuantizedLinear> quantized) {
        for (Map.Entry<String, float[]> e : modified.entrySet()) {
            String name = e.getKey();
            if (!store.has(name)) {
                throw new IllegalArgumentException("modified tensor '" + name + "' is not in the source");
            }
            if (store.info(name).numel() != e.getValue().length) {
                throw new IllegalArgumentException("modified tensor '" + name + "' has " + e.getValue().length
                        + " values, the source " + store.info(name).numel());
            }
            if (name.endsWith(".weight") && quantized.containsKey(QuantizedLinear.prefixOf(name))) {
                throw new IllegalArgumentException("tensor '" + name + "' is both quantized and modified");
            }
        }
    }

    /** The tensor written for modified tensor {@code name}: the source's name and shape, {@link TensorData#ofChangedFloats}'s dtype. */
    public static TensorData tensor(WeightStore store, String name, float[] values) {
        TensorInfo info = store.info(name);
        return TensorData.ofChangedFloats(name, info.shape(), values, info.dtype());
    }
}
