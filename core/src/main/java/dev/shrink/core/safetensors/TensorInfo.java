package dev.shrink.core.safetensors;

import dev.shrink.core.tensor.DType;

import java.util.Arrays;
import java.util.Objects;

/**
 * One header entry of a safetensors file: the tensor's name, element type, shape and its byte
 * range {@code [begin, end)} relative to the start of the data section (the first byte after the
 * header).
 *
 * <p>The shape is copied on construction and on access, so an instance is immutable. Equality
 * compares the shape by content.
 *
 * @param name  tensor name, e.g. {@code model.layers.0.self_attn.q_proj.weight}
 * @param dtype element type
 * @param shape dimensions, row-major; {@code []} is a scalar (one element)
 * @param begin first byte of the data, relative to the data section
 * @param end   one past the last byte of the data
 */
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {

    public TensorInfo {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(shape, "shape");
        shape = shape.clone();
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            }
        }
        if (begin < 0 || end < begin) {
            throw new IllegalArgumentException("bad byte range [" + begin + ", " + end + "]");
        }
    }

    /** A copy of the shape. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Number of elements: the product of the shape (1 for the scalar shape {@code []}). */
    public long numel() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    /** Bytes of data: {@code end - begin}. For a valid file this equals numel × dtype size. */
    public long byteLength() {
        return end - begin;
    }

    /** Number of dimensions. */
    public int rank() {
        return shape.length;
    }

    /**
     * The shape as {@code int[]}.
     *
     * @throws IllegalStateException if a dimension exceeds {@link Integer#MAX_VALUE}
     */
    public int[] intShape() {
        int[] out = new int[shape.length];
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] > Integer.MAX_VALUE) {
                throw new IllegalStateException("tensor '" + name + "' dimension " + i + " = " + shape[i]
                        + " does not fit in an int");
            }
            out[i] = (int) shape[i];
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorInfo t
                && name.equals(t.name) && dtype == t.dtype && Arrays.equals(shape, t.shape)
                && begin == t.begin && end == t.end;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
    }

    @Override
    public String toString() {
        return name + " " + dtype.safetensorsName() + " " + Arrays.toString(shape) + " @[" + begin + ", " + end + ")";
    }
}
