package dev.shrink.core.forward;

import dev.shrink.core.safetensors.WeightStore;

/**
 * Where the forward pass gets its float32 weights by tensor name. A plain folder reads them
 * from safetensors (any float dtype); readers of quantized folders dequantize {@code X.weight}
 * from {@code X.qweight}, {@code X.scales}, ... so the same decoder runs every format.
 */
public interface WeightSource {
    boolean has(String name);

    /** The tensor as float32, row-major. */
    float[] floats(String name);

    /** The tensor's shape. */
    long[] shape(String name);

    /**
     * The quantized linear with tensor prefix {@code prefix} ("model.layers.0.mlp.up_proj"), unpacked
     * but not dequantized, or null when the source holds it in float (the default).
     */
    default dev.shrink.core.quant.QuantizedLinear quantized(String prefix) {
        return null;
    }

    /** Where a tensor comes from (its file), for error messages. */
    default String origin(String name) {
        return name;
    }

    /**
     * Tensor {@code name} as float32, checked: present, of {@code shape} (what config.json implies), every
     * value finite; each failure a ShrinkException naming the tensor's file.
     */
    static float[] checked(WeightSource src, String name, long... shape) {
        if (!src.has(name)) {
            throw new dev.shrink.core.ShrinkException(src.origin(name) + ": the weights have no tensor '" + name + "'");
        }
        long[] actual = src.shape(name);
        if (!java.util.Arrays.equals(actual, shape)) {
            throw new dev.shrink.core.ShrinkException(src.origin(name) + ": tensor '" + name + "' has shape "
                    + java.util.Arrays.toString(actual) + " but config.json implies " + java.util.Arrays.toString(shape));
        }
        return NonFinite.checkWeight(src.origin(name), name, src.floats(name));
    }

    static WeightSource of(WeightStore store) {
        return new WeightSource() {
            @Override
            public boolean has(String name) {
                return store.has(name);
            }

            @Override
            public float[] floats(String name) {
                return store.floats(name);
            }

            @Override
            public long[] shape(String name) {
                return store.info(name).shape();
            }

            @Override
            public String origin(String name) {
                return store.has(name) ? store.fileOf(name).toString() : store.dir().toString();
            }
        };
    }
}
