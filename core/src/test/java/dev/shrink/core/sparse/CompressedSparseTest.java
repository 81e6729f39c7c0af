package dev.shrink.core.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.CompressedSparse.Encoded;
import dev.shrink.core.sparse.CompressedSparse.Format;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The compressed-tensors sparse layouts byte for byte against what the Python implementation
 * produces for hand-made matrices, round trips through safetensors files, and the errors of a
 * corrupt folder.
 */
class CompressedSparseTest {

    @TempDir
    Path tmp;

    // ---- golden bytes ----------------------------------------------------------------------

    /**
     * sparse-bitmask of W: [2, 10] F32 (K = 10: two bitmask bytes per row, the second half padding).
     * <pre>
     * row 0: [0, 1.5, 0, 0, -2, 0, 0, 0, 3, 0]   non-zeros at columns 1, 4, 8
     * row 1: [0.25, 0, 0, 0, 0, 0, 0, 7, 0, -1]  non-zeros at columns 0, 7, 9
     * </pre>
     * bitmask_compress: bytemasks = W != 0; values = W[bytemasks] (row-major) = [1.5, -2, 3, 0.25, 7, -1];
     * row_counts = [3, 3], row_offsets = cumsum - counts = [0, 3] (int64);
     * numpy.packbits(axis=-1, bitorder="little") puts column 8b+j in bit j of byte b:
     * row 0: byte 0 = bit1 | bit4 = 0x02 | 0x10 = 0x12, byte 1 = bit0 (column 8) = 0x01;
     * row 1: byte 0 = bit0 | bit7 = 0x81, byte 1 = bit1 (column 9) = 0x02; dtype uint8, shape [2, 2].
     * shape: torch.tensor([2, 10]) = int64 [2].
     */
    @Test
    void bitmaskGolden() {
        float[] W = {
            0, 1.5f, 0, 0, -2, 0, 0, 0, 3, 0,
            0.25f, 0, 0, 0, 0, 0, 0, 7, 0, -1};
        Encoded e = CompressedSparse.encode("x.weight", Format.SPARSE_BITMASK, W, 2, 10, DType.F32);
        List<TensorData> t = e.tensors("x");
        assertEquals(List.of("x.shape", "x.compressed", "x.bitmask", "x.row_offsets"), t.stream().map(TensorData::name).toList());

        assertTensor(t.get(0), DType.I64, new long[] {2}, i64(2, 10));
        assertTensor(t.get(1), DType.F32, new long[] {6}, f32(1.5f, -2, 3, 0.25f, 7, -1));
        assertTensor(t.get(2), DType.U8, new long[] {2, 2}, new byte[] {0x12, 0x01, (byte) 0x81, 0x02});
        assertTensor(t.get(3), DType.I64, new long[] {2}, i64(0, 3));
        assertArrayEquals(W, CompressedSparse.decode("x", e));
    }

    /**
     * sparse-24-bitmask of W: [2, 8] BF16, every group of 4 with exactly two non-zeros (so torch.topk
     * has no ties to break).
     * <pre>
     * row 0: [0, 2, 0, -1 | 4, 0, 0, 0.5]   kept columns 1, 3, 4, 7
     * row 1: [1, 1, 0, 0 | 0, -6, 3, 0]     kept columns 0, 1, 5, 6
     * </pre>
     * get_24_bytemasks keeps the top-2 |w| of each group; values = W[mask].reshape(2, 4) =
     * [[2, -1, 4, 0.5], [1, 1, -6, 3]] in bf16 (0x4000, 0xBF80, 0x4080, 0x3F00, 0x3F80, 0x3F80, 0xC0C0, 0x4040);
     * bitmask row 0 = bits 1, 3, 4, 7 = 0x02 + 0x08 + 0x10 + 0x80 = 0x9A, row 1 = bits 0, 1, 5, 6 = 0x63
     * (uint8 [2, 1]); shape = torch.tensor([2, 8]).reshape(-1, 1): int64 [2, 1]; no row_offsets.
     */
    @Test
    void twoFourGolden() {
        float[] W = {
            0, 2, 0, -1, 4, 0, 0, 0.5f,
            1, 1, 0, 0, 0, -6, 3, 0};
        Encoded e = CompressedSparse.encode("x.weight", Format.SPARSE_24_BITMASK, W, 2, 8, DType.BF16);
        List<TensorData> t = e.tensors("x");
        assertEquals(List.of("x.shape", "x.compressed", "x.bitmask"), t.stream().map(TensorData::name).toList());

        assertTensor(t.get(0), DType.I64, new long[] {2, 1}, i64(2, 8));
        assertTensor(t.get(1), DType.BF16, new long[] {2, 4},
                u16(0x4000, 0xBF80, 0x4080, 0x3F00, 0x3F80, 0x3F80, 0xC0C0, 0x4040));
        assertTensor(t.get(2), DType.U8, new long[] {2, 1}, new byte[] {(byte) 0x9A, 0x63});
        assertNull(e.rowOffsets());
        assertArrayEquals(W, CompressedSparse.decode("x", e));
    }

    /** A 2:4 group with fewer than two non-zeros still stores two values (zeros), so every row has K/2. */
    @Test
    void twoFourKeepsZerosInSparseGroups() {
        float[] W = {0, 0, 0, 5, 0, 0, 0, 0};
        Encoded e = CompressedSparse.encode("x.weight", Format.SPARSE_24_BITMASK, W, 1, 8, DType.F32);
        assertEquals(4, e.values().length);
        // non-zero first, then the group's first zeros: group 0 keeps columns 0 and 3, group 1 columns 4 and 5
        assertArrayEquals(new byte[] {(byte) 0b0011_1001}, e.bitmask());
        assertArrayEquals(new float[] {0, 5, 0, 0}, e.values());
        assertArrayEquals(W, CompressedSparse.decode("x", e));
    }

    @Test
    void notTwoFourIsRefusedNamingTheWeightRowAndInputs() {
        float[] W = {1, 0, 1, 0, 1, 1, 1, 0};
        var ex = assertThrows(IllegalArgumentException.class,
                () -> CompressedSparse.encode("model.layers.0.mlp.up_proj.weight", Format.SPARSE_24_BITMASK, W, 1, 8, DType.F32));
        assertTrue(ex.getMessage().contains("model.layers.0.mlp.up_proj.weight"), ex.getMessage());
        assertTrue(ex.getMessage().contains("row 0, inputs 4..7 hold 3 non-zeros"), ex.getMessage());
        var k = assertThrows(IllegalArgumentException.class,
                () -> CompressedSparse.encode("w", Format.SPARSE_24_BITMASK, new float[6], 1, 6, DType.F32));
        assertTrue(k.getMessage().contains("not a multiple of 4"), k.getMessage());
    }

    @Test
    void negativeZeroIsAZeroAsInPython() {
        float[] W = {-0f, 1, 0, 2};
        Encoded e = CompressedSparse.encode("w", Format.SPARSE_BITMASK, W, 1, 4, DType.F32);
        assertArrayEquals(new float[] {1, 2}, e.values());
    }

    // ---- round trips through files ---------------------------------------------------------

    @Test
    void roundTripsUnstructuredAndTwoFourInBf16AndF32() {
        Random rnd = new Random(7);
        int[][] shapes = {{3, 5}, {16, 24}, {7, 36}, {32, 64}, {1, 4}};
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            for (Format f : Format.values()) {
                for (int[] s : shapes) {
                    int N = s[0], K = s[1];
                    if (f == Format.SPARSE_24_BITMASK && K % 4 != 0) {
                        continue;
                    }
                    float[] W = f == Format.SPARSE_BITMASK ? randomSparse(rnd, N, K, 0.6, dtype) : randomTwoFour(rnd, N, K, dtype);
                    Path dir = tmp.resolve(dtype + "-" + f + "-" + N + "x" + K);
                    Encoded e = CompressedSparse.encode("m.weight", f, W, N, K, dtype);
                    List<TensorData> tensors = new ArrayList<>(e.tensors("m"));
                    tensors.add(TensorData.ofFloats("other", new long[] {2}, new float[] {1, 2}, DType.F32));
                    SafetensorsWriter.writeModel(dir, tensors, 1L << 30, null);
                    try (WeightStore store = WeightStore.open(dir)) {
                        assertTrue(CompressedSparse.isCompressed(store, "m"));
                        assertArrayEquals(new int[] {N, K}, CompressedSparse.dims(store, "m"));
                        float[] back = CompressedSparse.read(store, "m", f);
                        assertArrayEquals(W, back, dtype + " " + f + " " + N + "x" + K);
                        assertEquals(e.byteSize(), sizeOf(store, "m"));
                    }
                    if (f == Format.SPARSE_24_BITMASK) {
                        assertEquals((long) N * K / 2, e.values().length);
                        assertTrue(CompressedSparse.isTwoFour(W, N, K));
                    }
                }
            }
        }
    }

    private static long sizeOf(WeightStore store, String prefix) {
        long b = 0;
        for (String n : store.names()) {
            if (n.startsWith(prefix + ".")) {
                b += store.info(n).byteLength();
            }
        }
        return b;
    }

    // ---- corrupt folders -------------------------------------------------------------------

    /** A valid 2 × 10 sparse-bitmask weight "m" (the golden one), then {@code edit} changes its tensors. */
    private Path folder(String name, UnaryOperator<List<TensorData>> edit) {
        float[] W = {
            0, 1.5f, 0, 0, -2, 0, 0, 0, 3, 0,
            0.25f, 0, 0, 0, 0, 0, 0, 7, 0, -1};
        List<TensorData> t = new ArrayList<>(CompressedSparse.encode("m.weight", Format.SPARSE_BITMASK, W, 2, 10, DType.F32).tensors("m"));
        Path dir = tmp.resolve(name);
        SafetensorsWriter.writeModel(dir, edit.apply(t), 1L << 30, null);
        return dir;
    }

    private static List<TensorData> replace(List<TensorData> t, TensorData with) {
        List<TensorData> out = new ArrayList<>();
        for (TensorData d : t) {
            out.add(d.name().equals(with.name()) ? with : d);
        }
        return out;
    }

    private String readError(Path dir, Format f) {
        try (WeightStore store = WeightStore.open(dir)) {
            return assertThrows(ShrinkException.class, () -> CompressedSparse.read(store, "m", f)).getMessage();
        }
    }

    @Test
    void corruptBitmaskLengthIsOneClearError() {
        Path dir = folder("short-mask", t -> replace(t, TensorData.ofBytes("m.bitmask", DType.U8, new long[] {2, 1},
                new byte[] {0x12, (byte) 0x81})));
        String m = readError(dir, Format.SPARSE_BITMASK);
        assertTrue(m.contains("tensor 'm.bitmask' has shape [2, 1], expected [2, 2]"), m);
        assertTrue(m.startsWith(dir.resolve("model.safetensors").toString()), m);
    }

    @Test
    void valueCountMismatchIsOneClearError() {
        Path dir = folder("few-values", t -> replace(t, TensorData.ofFloats("m.compressed", new long[] {5},
                new float[] {1.5f, -2, 3, 0.25f, 7}, DType.F32)));
        String m = readError(dir, Format.SPARSE_BITMASK);
        assertTrue(m.contains("tensor 'm.compressed' holds 5 values but m.bitmask has 6 bits set"), m);
    }

    @Test
    void wrongRowOffsetsPaddingBitsAndMissingTensorsAreClearErrors() {
        Path offsets = folder("offsets", t -> replace(t, TensorData.ofBytes("m.row_offsets", DType.I64, new long[] {2}, i64(0, 2))));
        String m = readError(offsets, Format.SPARSE_BITMASK);
        assertTrue(m.contains("tensor 'm.row_offsets' entry 1 = 2, but m.bitmask puts row 1 at value 3"), m);

        // column 10 of row 0 does not exist: bit 2 of byte 1
        Path padding = folder("padding", t -> replace(t, TensorData.ofBytes("m.bitmask", DType.U8, new long[] {2, 2},
                new byte[] {0x12, 0x05, (byte) 0x81, 0x02})));
        m = readError(padding, Format.SPARSE_BITMASK);
        assertTrue(m.contains("tensor 'm.bitmask' row 0 has bits set past column 10"), m);

        Path missing = folder("missing", t -> t.stream().filter(d -> !d.name().equals("m.shape")).toList());
        m = readError(missing, Format.SPARSE_BITMASK);
        assertTrue(m.contains("compressed weight 'm' has no 'm.shape'"), m);

        Path floatMask = folder("float-mask", t -> replace(t, TensorData.ofFloats("m.bitmask", new long[] {2, 2},
                new float[4], DType.F32)));
        m = readError(floatMask, Format.SPARSE_BITMASK);
        assertTrue(m.contains("tensor 'm.bitmask' is F32; a packed bitmask is U8"), m);
    }

    @Test
    void twoFourFileWithThreeBitsInAGroupIsRefused() {
        float[] W = {0, 2, 0, -1, 4, 0, 0, 0.5f};
        List<TensorData> t = new ArrayList<>(CompressedSparse.encode("m.weight", Format.SPARSE_24_BITMASK, W, 1, 8, DType.F32).tensors("m"));
        // bits 1, 2, 3 in group 0 and only bit 4 in group 1: the count is still 4 = K/2
        t = replace(t, TensorData.ofBytes("m.bitmask", DType.U8, new long[] {1, 1}, new byte[] {0b0001_1110}));
        Path dir = tmp.resolve("bad24");
        SafetensorsWriter.writeModel(dir, t, 1L << 30, null);
        String m = readError(dir, Format.SPARSE_24_BITMASK);
        assertTrue(m.contains("tensor 'm.bitmask' row 0, inputs 0..3 has 3 bits set"), m);
        // a sparse-bitmask-shaped value tensor under the 2:4 format is refused by shape
        Path flat = folder("flat", x -> x);
        m = readError(flat, Format.SPARSE_24_BITMASK);
        assertTrue(m.contains("tensor 'm.compressed' has shape [6]; sparse-24-bitmask stores [N, K/2]"), m);
    }

    // ---- helpers ---------------------------------------------------------------------------

    /** N × K with about {@code density} non-zeros, values exact in {@code dtype}. */
    static float[] randomSparse(Random rnd, int N, int K, double density, DType dtype) {
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            if (rnd.nextDouble() < density) {
                W[i] = exact((float) rnd.nextGaussian(), dtype);
                if (W[i] == 0f) {
                    W[i] = 1f;
                }
            }
        }
        return W;
    }

    /** Dense random N × K, then the 2 largest |w| of every 4 consecutive inputs kept. */
    static float[] randomTwoFour(Random rnd, int N, int K, DType dtype) {
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            W[i] = exact((float) rnd.nextGaussian(), dtype);
        }
        for (int g = 0; g < W.length; g += 4) {
            // drop the two smallest |w| of the group
            for (int drop = 0; drop < 2; drop++) {
                int min = -1;
                for (int j = 0; j < 4; j++) {
                    if (W[g + j] != 0f && (min < 0 || Math.abs(W[g + j]) < Math.abs(W[g + min]))) {
                        min = j;
                    }
                }
                W[g + min] = 0f;
            }
        }
        return W;
    }

    static float exact(float v, DType dtype) {
        return dtype == DType.BF16 ? Floats.bf16ToFloat(Floats.floatToBf16(v)) : v;
    }

    private static void assertTensor(TensorData t, DType dtype, long[] shape, byte[] bytes) {
        assertEquals(dtype, t.dtype(), t.name());
        assertArrayEquals(shape, t.shape(), t.name());
        assertArrayEquals(bytes, t.data().toArray(ValueLayout.JAVA_BYTE), t.name());
    }

    private static byte[] i64(long... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long x : v) {
            b.putLong(x);
        }
        return b.array();
    }

    private static byte[] f32(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float x : v) {
            b.putFloat(x);
        }
        return b.array();
    }

    private static byte[] u16(int... v) {
        ByteBuffer b = ByteBuffer.allocate(2 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (int x : v) {
            b.putShort((short) x);
        }
        return b.array();
    }
}
