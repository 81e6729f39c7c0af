package dev.shrink.core.sparse;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The compressed-tensors sparse weight formats {@code sparse-bitmask} and {@code sparse-24-bitmask}:
 * pure encode and decode of one linear weight {@code W: [N, K]} (N = out, K = in) to and from the
 * format's tensors.
 *
 * <p>The layout, as the compressed-tensors source writes it (vllm-project/compressed-tensors,
 * {@code src/compressed_tensors/compressors/sparse_compressors/sparse_bitmask.py} ({@code BitmaskTensor},
 * {@code bitmask_compress}, {@code pack_bitmasks}) and {@code sparse_24_bitmask.py}
 * ({@code Sparse24BitMaskTensor}, {@code sparse24_bitmask_compress}, {@code get_24_bytemasks})). A
 * compressed weight {@code X.weight} is replaced by tensors under the prefix {@code X}:
 *
 * <table>
 *   <caption>sparse-bitmask (BitmaskTensor.dict)</caption>
 *   <tr><th>tensor</th><th>dtype</th><th>shape</th><th>content</th></tr>
 *   <tr><td>{@code X.shape}</td><td>I64</td><td>[2]</td><td>(N, K): {@code torch.tensor(list(shape))}</td></tr>
 *   <tr><td>{@code X.compressed}</td><td>the weight's dtype</td><td>[nnz]</td><td>the non-zeros,
 *       {@code W[W != 0]}: row-major order (row 0's in column order, then row 1's, ...)</td></tr>
 *   <tr><td>{@code X.bitmask}</td><td>U8</td><td>[N, ceil(K/8)]</td><td>{@code numpy.packbits(W != 0,
 *       axis=-1, bitorder="little")}: bit j (value {@code 1 << j}) of byte b in row n is column
 *       {@code 8b + j}; the last byte of a row is padded with zero bits</td></tr>
 *   <tr><td>{@code X.row_offsets}</td><td>I64</td><td>[N]</td><td>index in {@code compressed} of
 *       row n's first value: {@code cumsum(row_counts) - row_counts}</td></tr>
 * </table>
 *
 * <table>
 *   <caption>sparse-24-bitmask (Sparse24BitMaskTensor.dict)</caption>
 *   <tr><th>tensor</th><th>dtype</th><th>shape</th><th>content</th></tr>
 *   <tr><td>{@code X.shape}</td><td>I64</td><td>[2, 1]</td><td>(N, K): {@code torch.tensor(shape).reshape(-1, 1)}</td></tr>
 *   <tr><td>{@code X.compressed}</td><td>the weight's dtype</td><td>[N, K/2]</td><td>the kept values,
 *       {@code W[mask].reshape(N, K/2)}: exactly 2 per group of 4 consecutive inputs, in column order</td></tr>
 *   <tr><td>{@code X.bitmask}</td><td>U8</td><td>[N, ceil(K/8)]</td><td>the kept positions, packed as above</td></tr>
 * </table>
 *
 * <p>In 2:4 the mask is not {@code W != 0}: {@code get_24_bytemasks} keeps the top-2 |w| of every group
 * of 4 (torch.topk), so a group with fewer than two non-zeros also keeps zeros, and every row stores
 * exactly K/2 values. Which zero torch.topk picks on ties is not specified; this encoder keeps the
 * non-zeros and then the lowest-index zeros. Decoders (compressed-tensors {@code bitmask_decompress},
 * {@code sparse24_bitmask_decompress}) only scatter the values into the mask's positions, so any such
 * choice decodes to the same matrix. A weight with more than two non-zeros in a group of 4 is not 2:4
 * and cannot be stored. {@code row_offsets} is written for sparse-bitmask only and is not needed to
 * decode; this reader checks it when present. Negative zero counts as zero ({@code -0.0 != 0} is
 * false), as in the Python source.
 *
 * <p>Values are stored in the weight's float dtype (F32, F16, BF16) exactly: a float array read from
 * such a tensor converts back to the same bits.
 */
public final class CompressedSparse {

    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private CompressedSparse() {
    }

    /** The two formats, by their compressed-tensors names (CompressionFormat.sparse_bitmask / sparse_24_bitmask). */
    public enum Format {
        /** Any sparsity: the non-zeros, a bitmask and row offsets. */
        SPARSE_BITMASK("sparse-bitmask"),
        /** 2:4: exactly 2 of every 4 consecutive inputs kept; values [N, K/2], a bitmask. */
        SPARSE_24_BITMASK("sparse-24-bitmask");

        private final String configName;

        Format(String configName) {
            this.configName = configName;
        }

        /** The name in config.json's sparsity_config.format. */
        public String configName() {
            return configName;
        }

        /** The format of a config name, or null for another one. */
        public static Format fromConfigName(String name) {
            for (Format f : values()) {
                if (f.configName.equals(name)) {
                    return f;
                }
            }
            return null;
        }

        /** The names, for messages: "sparse-bitmask, sparse-24-bitmask". */
        public static String names() {
            return Arrays.stream(values()).map(Format::configName).reduce((a, b) -> a + ", " + b).orElse("");
        }
    }

    /** Tensor name suffixes under the weight's prefix X. */
    public static final String SHAPE = "shape";
    public static final String COMPRESSED = "compressed";
    public static final String BITMASK = "bitmask";
    public static final String ROW_OFFSETS = "row_offsets";

    /**
     * One weight [N, K] in a sparse format.
     *
     * @param format     the format
     * @param N          rows (out)
     * @param K          columns (in)
     * @param dtype      the dtype the values are stored in (F32, F16, BF16)
     * @param values     compressed: [nnz] for sparse-bitmask, [N·K/2] (row-major [N, K/2]) for 2:4
     * @param bitmask    [N, ceil(K/8)] row-major, little bit order
     * @param rowOffsets [N] for sparse-bitmask, null for 2:4
     */
    public record Encoded(Format format, int N, int K, DType dtype, float[] values, byte[] bitmask, long[] rowOffsets) {

        /** The format's tensors under {@code prefix} ("model.layers.0.mlp.up_proj"), in compressed-tensors' dict order. */
        public List<TensorData> tensors(String prefix) {
            List<TensorData> out = new ArrayList<>(4);
            long[] shapeDims = format == Format.SPARSE_BITMASK ? new long[] {2} : new long[] {2, 1};
            out.add(TensorData.ofBytes(prefix + "." + SHAPE, DType.I64, shapeDims, longsLE(new long[] {N, K})));
            long[] valueShape = format == Format.SPARSE_BITMASK ? new long[] {values.length}
                    : new long[] {N, K / 2};
            out.add(TensorData.ofFloats(prefix + "." + COMPRESSED, valueShape, values, dtype));
            out.add(TensorData.ofBytes(prefix + "." + BITMASK, DType.U8, new long[] {N, bytesPerRow(K)}, bitmask));
            if (format == Format.SPARSE_BITMASK) {
                out.add(TensorData.ofBytes(prefix + "." + ROW_OFFSETS, DType.I64, new long[] {N}, longsLE(rowOffsets)));
            }
            return out;
        }

        /** Bytes of the tensors on disk. */
        public long byteSize() {
            long b = 2L * 8 + (long) values.length * dtype.byteSize() + bitmask.length;
            return rowOffsets == null ? b : b + 8L * rowOffsets.length;
        }
    }

    /** Bytes of one packed bitmask row: ceil(K / 8). */
    public static int bytesPerRow(int K) {
        return (K + 7) / 8;
    }

    /**
     * Encodes {@code W: [N, K]}.
     *
     * @param name  the weight's name, for messages ("model.layers.0.mlp.up_proj.weight")
     * @param dtype the dtype the values will be stored in (F32, F16, BF16)
     * @throws IllegalArgumentException for a length that is not N·K, another dtype, or (2:4) K not a
     *                                  multiple of 4 or a group of 4 with more than 2 non-zeros, naming
     *                                  the weight, the row and the inputs
     */
    public static Encoded encode(String name, Format format, float[] W, int N, int K, DType dtype) {
        if (N <= 0 || K <= 0 || (long) N * K != W.length) {
            throw new IllegalArgumentException("'" + name + "': " + W.length + " values do not make a [" + N + ", " + K + "] weight");
        }
        if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
            throw new IllegalArgumentException("'" + name + "' is " + dtype.safetensorsName()
                    + "; compressed sparse values are stored as F32, F16 or BF16");
        }
        int rowBytes = bytesPerRow(K);
        byte[] bitmask = new byte[Math.multiplyExact(N, rowBytes)];
        if (format == Format.SPARSE_24_BITMASK) {
            if (K % 4 != 0) {
                throw new IllegalArgumentException("'" + name + "' has K = " + K
                        + " inputs, not a multiple of 4: it cannot be stored as 2:4 (sparse-24-bitmask)");
            }
            float[] values = new float[W.length / 2];
            int v = 0;
            for (int n = 0; n < N; n++) {
                int row = n * K;
                for (int g = 0; g < K; g += 4) {
                    int nonZeros = 0;
                    for (int j = 0; j < 4; j++) {
                        if (W[row + g + j] != 0f) {
                            nonZeros++;
                        }
                    }
                    if (nonZeros > 2) {
                        throw new IllegalArgumentException("'" + name + "' is not 2:4 sparse: row " + n + ", inputs "
                                + g + ".." + (g + 3) + " hold " + nonZeros
                                + " non-zeros (sparse-24-bitmask keeps 2 of every 4)");
                    }
                    // Keep the non-zeros, then fill up to two with the group's first zeros.
                    int zerosToKeep = 2 - nonZeros;
                    for (int j = 0; j < 4; j++) {
                        float w = W[row + g + j];
                        boolean keep = w != 0f;
                        if (!keep && zerosToKeep > 0) {
                            keep = true;
                            zerosToKeep--;
                        }
                        if (keep) {
                            int k = g + j;
                            bitmask[n * rowBytes + (k >>> 3)] |= (byte) (1 << (k & 7));
                            values[v++] = w;
                        }
                    }
                }
            }
            return new Encoded(format, N, K, dtype, values, bitmask, null);
        }
        long[] rowOffsets = new long[N];
        int nnz = 0;
        for (float w : W) {
            if (w != 0f) {
                nnz++;
            }
        }
        float[] values = new float[nnz];
        int v = 0;
        for (int n = 0; n < N; n++) {
            rowOffsets[n] = v;
            int row = n * K;
            for (int k = 0; k < K; k++) {
                float w = W[row + k];
                if (w != 0f) {
                    bitmask[n * rowBytes + (k >>> 3)] |= (byte) (1 << (k & 7));
                    values[v++] = w;
                }
            }
        }
        return new Encoded(format, N, K, dtype, values, bitmask, rowOffsets);
    }

    /** Whether every group of 4 consecutive inputs of every row holds at most 2 non-zeros (K a multiple of 4). */
    public static boolean isTwoFour(float[] W, int N, int K) {
        if (K % 4 != 0 || (long) N * K != W.length) {
            return false;
        }
        for (int i = 0; i < W.length; i += 4) {
            int nonZeros = (W[i] != 0f ? 1 : 0) + (W[i + 1] != 0f ? 1 : 0) + (W[i + 2] != 0f ? 1 : 0)
                    + (W[i + 3] != 0f ? 1 : 0);
            if (nonZeros > 2) {
                return false;
            }
        }
        return true;
    }

    /**
     * Decodes to the dense {@code W: [N, K]}, checking that the parts fit together.
     *
     * @param prefix the weight's prefix X, for messages
     * @throws IllegalArgumentException naming the tensor ({@code X.bitmask}, {@code X.compressed},
     *                                  {@code X.row_offsets}) whose content does not fit
     */
    public static float[] decode(String prefix, Encoded e) {
        int N = e.N(), K = e.K();
        if (N <= 0 || K <= 0) {
            throw new IllegalArgumentException("tensor '" + prefix + "." + SHAPE + "' holds [" + N + ", " + K
                    + "], not a weight shape");
        }
        int rowBytes = bytesPerRow(K);
        byte[] mask = e.bitmask();
        if ((long) N * rowBytes != mask.length) {
            throw new IllegalArgumentException("tensor '" + prefix + "." + BITMASK + "' has " + mask.length
                    + " bytes, expected " + ((long) N * rowBytes) + " = " + N + " rows × ceil(" + K + "/8) for "
                    + prefix + "." + SHAPE + " [" + N + ", " + K + "]");
        }
        if ((long) N * K > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("'" + prefix + "' decodes to " + N + " × " + K
                    + " values, too many for one float array");
        }
        int padBits = rowBytes * 8 - K;
        int lastByteMask = padBits == 0 ? 0 : (0xFF << (8 - padBits)) & 0xFF;
        long[] rowCounts = new long[N];
        long total = 0;
        for (int n = 0; n < N; n++) {
            int c = 0;
            for (int b = 0; b < rowBytes; b++) {
                c += Integer.bitCount(mask[n * rowBytes + b] & 0xFF);
            }
            if (lastByteMask != 0 && (mask[n * rowBytes + rowBytes - 1] & lastByteMask) != 0) {
                throw new IllegalArgumentException("tensor '" + prefix + "." + BITMASK + "' row " + n
                        + " has bits set past column " + K + " (padding bits must be zero)");
            }
            rowCounts[n] = c;
            total += c;
        }
        float[] values = e.values();
        if (total != values.length) {
            throw new IllegalArgumentException("tensor '" + prefix + "." + COMPRESSED + "' holds " + values.length
                    + " values but " + prefix + "." + BITMASK + " has " + total + " bits set");
        }
        if (e.format() == Format.SPARSE_24_BITMASK) {
            if (K % 4 != 0) {
                throw new IllegalArgumentException("tensor '" + prefix + "." + SHAPE + "' holds K = " + K
                        + ", not a multiple of 4 as sparse-24-bitmask needs");
            }
            for (int n = 0; n < N; n++) {
                for (int g = 0; g < K; g += 4) {
                    int bits = 0;
                    for (int j = 0; j < 4; j++) {
                        int k = g + j;
                        bits += (mask[n * rowBytes + (k >>> 3)] >>> (k & 7)) & 1;
                    }
                    if (bits != 2) {
                        throw new IllegalArgumentException("tensor '" + prefix + "." + BITMASK + "' row " + n
                                + ", inputs " + g + ".." + (g + 3) + " has " + bits
                                + " bits set; sparse-24-bitmask keeps exactly 2 of every 4");
                    }
                }
            }
        }
        long[] offsets = e.rowOffsets();
        if (offsets != null) {
            if (offsets.length != N) {
                throw new IllegalArgumentException("tensor '" + prefix + "." + ROW_OFFSETS + "' has " + offsets.length
                        + " entries, expected N = " + N);
            }
            long start = 0;
            for (int n = 0; n < N; n++) {
                if (offsets[n] != start) {
                    throw new IllegalArgumentException("tensor '" + prefix + "." + ROW_OFFSETS + "' entry " + n + " = "
                            + offsets[n] + ", but " + prefix + "." + BITMASK + " puts row " + n + " at value " + start);
                }
                start += rowCounts[n];
            }
        }
        float[] W = new float[N * K];
        int v = 0;
        for (int n = 0; n < N; n++) {
            int row = n * K;
            for (int b = 0; b < rowBytes; b++) {
                int bits = mask[n * rowBytes + b] & 0xFF;
                while (bits != 0) {
                    int j = Integer.numberOfTrailingZeros(bits);
                    bits &= bits - 1;
                    W[row + 8 * b + j] = values[v++];
                }
            }
        }
        return W;
    }

    /** Whether the store holds {@code X.compressed} or {@code X.bitmask}: X is a compressed weight. */
    public static boolean isCompressed(WeightStore store, String prefix) {
        return store.has(prefix + "." + COMPRESSED) || store.has(prefix + "." + BITMASK);
    }

    /**
     * (N, K) of the compressed weight {@code prefix}, from its {@code X.shape} tensor.
     *
     * @throws ShrinkException naming the file and tensor when it is missing or not two positive integers
     */
    public static int[] dims(WeightStore store, String prefix) {
        String name = prefix + "." + SHAPE;
        TensorInfo t = require(store, name, prefix);
        if ((t.dtype() != DType.I64 && t.dtype() != DType.I32) || t.numel() != 2) {
            throw bad(store, name, "is " + t.dtype().safetensorsName() + " " + Arrays.toString(t.shape())
                    + "; a compressed weight's shape is I64 [2] (sparse-bitmask) or [2, 1] (sparse-24-bitmask)");
        }
        int[] nk = store.ints(name);
        if (nk[0] <= 0 || nk[1] <= 0) {
            throw bad(store, name, "holds " + Arrays.toString(nk) + ", not a weight shape [N, K]");
        }
        return nk;
    }

    /**
     * Reads and decodes the compressed weight {@code prefix} ("model.layers.0.mlp.up_proj") of {@code store}.
     *
     * @throws ShrinkException naming the file and the tensor for a missing tensor, a wrong dtype or shape,
     *                         or content that does not fit (bit counts, value counts, row offsets)
     */
    public static float[] read(WeightStore store, String prefix, Format format) {
        int[] nk = dims(store, prefix);
        int N = nk[0], K = nk[1];
        String cName = prefix + "." + COMPRESSED, bName = prefix + "." + BITMASK, rName = prefix + "." + ROW_OFFSETS;
        TensorInfo c = require(store, cName, prefix);
        TensorInfo b = require(store, bName, prefix);
        if (b.dtype() != DType.U8 && b.dtype() != DType.I8) {
            throw bad(store, bName, "is " + b.dtype().safetensorsName() + "; a packed bitmask is U8 [N, ceil(K/8)]");
        }
        long[] expectedMask = {N, bytesPerRow(K)};
        if (!Arrays.equals(b.shape(), expectedMask)) {
            throw bad(store, bName, "has shape " + Arrays.toString(b.shape()) + ", expected "
                    + Arrays.toString(expectedMask) + " for " + prefix + "." + SHAPE + " [" + N + ", " + K + "]");
        }
        if (!c.dtype().isFloating()) {
            throw bad(store, cName, "is " + c.dtype().safetensorsName() + "; compressed values have the weight's float dtype");
        }
        if (format == Format.SPARSE_24_BITMASK) {
            long[] expected = {N, K / 2};
            if (K % 4 != 0 || !Arrays.equals(c.shape(), expected)) {
                throw bad(store, cName, "has shape " + Arrays.toString(c.shape()) + "; sparse-24-bitmask stores [N, K/2] = "
                        + Arrays.toString(expected) + " for " + prefix + "." + SHAPE + " [" + N + ", " + K + "]"
                        + (K % 4 != 0 ? " (and K must be a multiple of 4)" : ""));
            }
        } else if (c.rank() != 1) {
            throw bad(store, cName, "has shape " + Arrays.toString(c.shape()) + "; sparse-bitmask stores the non-zeros as [nnz]");
        }
        long[] rowOffsets = null;
        if (store.has(rName)) {
            TensorInfo r = store.info(rName);
            if (r.dtype().isFloating() || r.rank() != 1) {
                throw bad(store, rName, "is " + r.dtype().safetensorsName() + " " + Arrays.toString(r.shape())
                        + "; row offsets are I64 [N]");
            }
            int[] ints = store.ints(rName);
            rowOffsets = new long[ints.length];
            for (int i = 0; i < ints.length; i++) {
                rowOffsets[i] = ints[i];
            }
        } else if (format == Format.SPARSE_BITMASK) {
            throw ShrinkException.at(store.fileOf(bName), "sparse-bitmask weight '" + prefix + "' has no '" + rName + "'");
        }
        MemorySegment seg = store.data(bName);
        byte[] mask = seg.toArray(ValueLayout.JAVA_BYTE);
        float[] values = store.floats(cName);
        try {
            return decode(prefix, new Encoded(format, N, K, c.dtype(), values, mask, rowOffsets));
        } catch (IllegalArgumentException e) {
            throw ShrinkException.at(store.fileOf(bName), e.getMessage(), e);
        }
    }

    private static TensorInfo require(WeightStore store, String tensor, String prefix) {
        if (!store.has(tensor)) {
            String seen = store.has(prefix + "." + BITMASK) ? prefix + "." + BITMASK : prefix + "." + COMPRESSED;
            java.nio.file.Path where = store.has(seen) ? store.fileOf(seen) : store.dir();
            throw ShrinkException.at(where, "compressed weight '" + prefix + "' has no '" + tensor + "'");
        }
        return store.info(tensor);
    }

    private static ShrinkException bad(WeightStore store, String tensor, String problem) {
        return ShrinkException.at(store.fileOf(tensor), "tensor '" + tensor + "' " + problem);
    }

    private static byte[] longsLE(long[] v) {
        byte[] out = new byte[8 * v.length];
        MemorySegment.copy(v, 0, MemorySegment.ofArray(out), LONG_LE, 0, v.length);
        return out;
    }
}
