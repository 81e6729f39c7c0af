package dev.shrink.core.safetensors;

import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor to write: name, element type, shape and its data as little-endian bytes, row-major.
 * The data must hold exactly numel × dtype size bytes; {@link SafetensorsWriter} checks that.
 * The shape is copied on construction and on access; the data segment is not copied.
 *
 * @param name  tensor name
 * @param dtype element type
 * @param shape dimensions; {@code []} is a scalar
 * @param data  little-endian bytes
 */
public record TensorData(String name, DType dtype, long[] shape, MemorySegment data) {

    public TensorData {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(data, "data");
        shape = shape.clone();
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("tensor '" + name + "': negative dimension in shape "
                        + Arrays.toString(shape));
            }
        }
    }

    /** A copy of the shape. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Product of the shape (1 for {@code []}). */
    public long numel() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    /** Bytes the data must have: numel × dtype size. */
    public long expectedBytes() {
        return Math.multiplyExact(numel(), (long) dtype.byteSize());
    }

    /**
     * Float values stored as F32, F16 (round to nearest even) or BF16 (round to nearest even).
     *
     * @param values numel(shape) values, row-major
     * @throws IllegalArgumentException for another dtype or a values length that does not match the shape
     */
    public static TensorData ofFloats(String name, long[] shape, float[] values, DType dtype) {
        checkCount(name, shape, values.length);
        int n = values.length;
        MemorySegment seg = allocate((long) n * dtype.byteSize());
        switch (dtype) {
            case F32 -> MemorySegment.copy(values, 0, seg, SafetensorsFile.FLOAT_LE, 0, n);
            case F16, BF16 -> {
                short[] buf = new short[Math.min(n, 8192)];
                for (int base = 0; base < n; base += buf.length) {
                    int len = Math.min(buf.length, n - base);
                    if (dtype == DType.F16) {
                        for (int i = 0; i < len; i++) {
                            buf[i] = Floats.floatToF16(values[base + i]);
                        }
                    } else {
                        for (int i = 0; i < len; i++) {
                            buf[i] = Floats.floatToBf16(values[base + i]);
                        }
                    }
                    MemorySegment.copy(buf, 0, seg, SafetensorsFile.SHORT_LE, 2L * base, len);
                }
            }
            default -> throw new IllegalArgumentException("tensor '" + name + "': ofFloats writes F32, F16 or BF16, not "
                    + dtype.safetensorsName());
        }
        return new TensorData(name, dtype, shape, seg);
    }

    /**
     * New float values of a tensor a stage changed (AWQ's scaled norms, a rotated embedding) in a
     * quantized folder: F16 when the source held it in 16 bits and every value fits in fp16, else F32
     * (never lose range, nor precision against a 32-bit source).
     */
    public static TensorData ofChangedFloats(String name, long[] shape, float[] values, DType source) {
        return ofFloats(name, shape, values, changedFloatDType(source, values));
    }

    /** The dtype {@link #ofChangedFloats} writes. */
    public static DType changedFloatDType(DType source, float[] values) {
        if (source != DType.F16 && source != DType.BF16) {
            return DType.F32;
        }
        for (float v : values) {
            if (!(Math.abs(v) <= 65504f)) {
                return DType.F32;
            }
        }
        return DType.F16;
    }

    /**
     * Int values stored as I32.
     *
     * @param values numel(shape) values, row-major
     * @throws IllegalArgumentException if the values length does not match the shape
     */
    public static TensorData ofInts(String name, long[] shape, int[] values) {
        checkCount(name, shape, values.length);
        MemorySegment seg = allocate(4L * values.length);
        MemorySegment.copy(values, 0, seg, SafetensorsFile.INT_LE, 0, values.length);
        return new TensorData(name, DType.I32, shape, seg);
    }

    /**
     * Raw little-endian bytes of any dtype. The array is wrapped, not copied: do not modify it
     * before the tensor is written. The size is checked by the writer.
     */
    public static TensorData ofBytes(String name, DType dtype, long[] shape, byte[] bytes) {
        return new TensorData(name, dtype, shape, MemorySegment.ofArray(bytes));
    }

    private static void checkCount(String name, long[] shape, int count) {
        long numel = 1;
        for (long d : shape) {
            numel = Math.multiplyExact(numel, d);
        }
        if (numel != count) {
            throw new IllegalArgumentException("tensor '" + name + "': " + count + " values but shape "
                    + Arrays.toString(shape) + " has " + numel + " elements");
        }
    }

    /** A zeroed segment of that many bytes: on the heap when it fits in a byte[], else native (GC-managed). */
    private static MemorySegment allocate(long bytes) {
        if (bytes <= SafetensorsFile.MAX_ARRAY_LENGTH) {
            return MemorySegment.ofArray(new byte[(int) bytes]);
        }
        return Arena.ofAuto().allocate(bytes, 8);
    }

    @Override
    public String toString() {
        return "TensorData[" + name + " " + dtype.safetensorsName() + " " + Arrays.toString(shape)
                + ", " + data.byteSize() + " bytes]";
    }
}
