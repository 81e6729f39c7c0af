package dev.shrink.core.forward;

/**
 * Keys and values of one sequence for every layer, for incremental decoding.
 * Per layer k, v: [capacity, Hkv, D]; positions 0..length−1 are filled. Always float32: an int8 /
 * int4 cache is simulated by the {@link Decoder}, which hands it K and V already quantized and
 * dequantized ({@link KvCacheType#roundTrip}).
 */
public final class KvCache {
    private final float[][] keys;
    private final float[][] values;
    private final int capacity;
    private final int rowSize; // Hkv · D
    private int length;

    public KvCache(int layers, int capacity, int kvHeads, int headDim) {
        this.capacity = capacity;
        this.rowSize = kvHeads * headDim;
        long floats = (long) capacity * rowSize;
        if (floats > Integer.MAX_VALUE - 8) {
            throw new dev.shrink.core.ShrinkException("a KV cache of " + capacity + " positions × " + rowSize
                    + " floats per layer is more than a Java array holds: use fewer tokens");
        }
        this.keys = new float[layers][(int) floats];
        this.values = new float[layers][keys[0].length];
    }

    public int length() {
        return length;
    }

    public int capacity() {
        return capacity;
    }

    /** Appends T rows of k and v ([T, Hkv·D]) for {@code layer} at positions length..length+T−1. */
    void append(int layer, float[] k, int kOff, float[] v, int vOff, int T) {
        if (length + T > capacity) {
            throw new IllegalStateException("KV cache full: " + capacity + " positions");
        }
        System.arraycopy(k, kOff, keys[layer], length * rowSize, T * rowSize);
        System.arraycopy(v, vOff, values[layer], length * rowSize, T * rowSize);
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }

    /** Called once all layers have appended T positions. */
    void advance(int T) {
        length += T;
    }
}
