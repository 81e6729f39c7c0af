package dev.shrink.kernels.cuda;

import static dev.shrink.kernels.cpu.Close.assertClose;
import static dev.shrink.kernels.cpu.Close.random;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.tensor.Floats;
import dev.shrink.kernels.cpu.ReferenceOps;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The {@link DeviceOps} a GPU-resident decoder forward needs besides GEMMs, against plain-Java
 * references: fp16 conversion (bit for bit {@link Floats#floatToF16}), the residual add, the column
 * copy, attention with a sliding window ({@link ReferenceOps}' windowed attention), cross-entropy with
 * ignored rows, the KV-cache int8/int4 round trip (bit for bit {@link KvCacheType#roundTrip}) and GPTQ
 * dequantization (bit for bit fp16 of {@link QuantizedLinear#dequantize}), a mixture of experts' row gather and
 * scaled row add (bit for bit the host's). Outputs are poisoned
 * first. Skipped without a GPU.
 */
class DeviceOpsForwardTest {
    private static final ReferenceOps REF = new ReferenceOps();
    private static CudaOps cuda;
    private static String skipReason;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            return;
        }
        cuda = CudaOps.open(0);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(cuda != null, skipReason);
        cuda.setMath(GemmMath.FP32);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            cuda.close();
        }
    }

    // ---------------------------------------------------------------- toHalf

    @Test
    void toHalfIsFloatToF16BitForBit() {
        Random r = new Random(1);
        List<Float> xs = new ArrayList<>(List.of(0f, -0f, 1f, -1f, 65504f, Math.nextDown(65520f), 65520f, -65520f,
                1e6f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN,
                Float.intBitsToFloat(0xffc00000), Float.intBitsToFloat(0x7f800001), Float.intBitsToFloat(0xff812345),
                0x1p-24f, 0x1p-25f, -0x1p-25f, 0x1.8p-24f, 0x1p-14f, Math.nextDown(0x1p-14f), Float.MIN_VALUE,
                Float.MIN_NORMAL, -Float.MIN_VALUE, Float.MAX_VALUE));
        for (int i = 0; i < 1000; i++) { // ties: midpoints of adjacent finite halves (exact in float)
            short h = (short) r.nextInt(0x7bff);
            float a = Floats.f16ToFloat(h), b = Floats.f16ToFloat((short) (h + 1));
            float mid = (a + b) / 2;
            xs.add(r.nextBoolean() ? mid : -mid);
            xs.add(Math.nextUp(mid));
            xs.add(Math.nextDown(mid));
        }
        for (int i = 0; i < 2000; i++) {
            xs.add(Float.intBitsToFloat(r.nextInt())); // every exponent: overflow, underflow, NaNs
            xs.add((r.nextFloat() * 2 - 1) * 70000f);
        }
        float[] x = new float[xs.size()]; // 7025: not a multiple of the block
        for (int i = 0; i < x.length; i++) {
            x[i] = xs.get(i);
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dx = put(x); DeviceBuffer dh = poisoned((x.length + 1) / 2)) {
            d.toHalf(dx.address(), dh.address(), x.length);
            short[] h = downloadShorts(dh, x.length);
            for (int i = 0; i < x.length; i++) {
                short e = Floats.floatToF16(x[i]);
                if (Float.isNaN(x[i])) {
                    assertTrue(Float.isNaN(Floats.f16ToFloat(h[i])) && (h[i] & 0x8000) == (e & 0x8000),
                            "toHalf(" + x[i] + " bits " + Integer.toHexString(Float.floatToRawIntBits(x[i])) + ") = "
                                    + Integer.toHexString(h[i] & 0xffff) + ": not a NaN of the same sign");
                } else if (h[i] != e) {
                    fail("toHalf(" + x[i] + ") = 0x" + Integer.toHexString(h[i] & 0xffff) + ", expected 0x"
                            + Integer.toHexString(e & 0xffff) + " (element " + i + ")");
                }
            }
        }
    }

    // ---------------------------------------------------------------- add, copyRows

    @Test
    void addIsElementwise() {
        int n = 1000 * 3 + 7;
        Random r = new Random(2);
        float[] x = random(r, n, 10f), dd = random(r, n, 10f);
        float[] expected = new float[n];
        for (int i = 0; i < n; i++) {
            expected[i] = x[i] + dd[i];
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dx = put(x); DeviceBuffer ddev = put(dd)) {
            d.add(dx.address(), ddev.address(), n);
            assertClose("add", expected, d.downloadFloats(dx, 0, n), 0, 0);
        }
    }

    @ParameterizedTest(name = "rows={0} width={1} srcLd={2} srcCol0={3} dstLd={4} dstCol0={5}")
    @CsvSource({"37, 19, 50, 7, 40, 13", "1, 1, 1, 0, 1, 0", "300, 64, 192, 128, 64, 0", "5, 40, 40, 0, 100, 60"})
    void copyRowsCopiesTheSubMatrixOnly(int rows, int width, int srcLd, int srcCol0, int dstLd, int dstCol0) {
        Random r = new Random(rows * 31L + width);
        float[] src = random(r, rows * srcLd, 1f), dst = random(r, rows * dstLd, 1f);
        float[] expected = dst.clone();
        for (int i = 0; i < rows; i++) {
            System.arraycopy(src, i * srcLd + srcCol0, expected, i * dstLd + dstCol0, width);
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer ds = put(src); DeviceBuffer dd = put(dst)) {
            d.copyRows(ds.address(), srcLd, srcCol0, dd.address(), dstLd, dstCol0, rows, width);
            assertClose("copyRows", expected, d.downloadFloats(dd, 0, dst.length), 0, 0); // the rest untouched
        }
        assertThrows(IllegalArgumentException.class, () -> cuda.deviceOps().copyRows(0, 8, 4, 0, 8, 0, 1, 5));
    }

    // ---------------------------------------------------------------- mixture of experts: gatherRows, addScaledRows

    /** n distinct rows of M in a random order. */
    private static int[] distinctRows(Random r, int M, int n) {
        List<Integer> all = new ArrayList<>();
        for (int m = 0; m < M; m++) {
            all.add(m);
        }
        java.util.Collections.shuffle(all, r);
        return all.subList(0, n).stream().mapToInt(Integer::intValue).toArray();
    }

    @ParameterizedTest(name = "M={0} C={1} n={2}")
    @CsvSource({"24, 64, 9", "1, 1, 1", "80, 33, 80", "3000, 4096, 2500"})
    void gatherRowsAndAddScaledRowsAreTheHostsBitForBit(int M, int C, int n) {
        Random r = new Random(M * 7L + C * 13L + n);
        int[] rows = distinctRows(r, M, n);
        float[] src = random(r, M * C, 3f), y = random(r, n * C, 3f), out = random(r, M * C, 3f);
        float[] w = random(r, n, 1f);
        float[] gathered = new float[n * C], added = out.clone();
        for (int i = 0; i < n; i++) {
            System.arraycopy(src, rows[i] * C, gathered, i * C, C);
            for (int c = 0; c < C; c++) {
                added[rows[i] * C + c] += w[i] * y[i * C + c]; // rounded product, then rounded sum
            }
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer ds = put(src); DeviceBuffer dr = putInts(rows); DeviceBuffer dg = poisoned(n * (long) C);
             DeviceBuffer dy = put(y); DeviceBuffer dw = put(w); DeviceBuffer dout = put(out)) {
            d.gatherRows(ds.address(), dr.address(), n, C, dg.address());
            assertClose("gatherRows", gathered, d.downloadFloats(dg, 0, n * C), 0, 0);
            d.addScaledRows(dy.address(), dr.address(), dw.address(), n, C, dout.address());
            assertClose("addScaledRows", added, d.downloadFloats(dout, 0, M * C), 0, 0); // other rows untouched
        }
        assertThrows(IllegalArgumentException.class, () -> d.gatherRows(0, 0, -1, C, 0));
    }

    // ---------------------------------------------------------------- windowed attention

    @ParameterizedTest(name = "B={0} T={1} H={2} Hkv={3} D={4} window={5}")
    @CsvSource({"2, 19, 4, 2, 16, 1", "2, 19, 4, 2, 16, 18", "2, 19, 4, 2, 16, 19", "2, 19, 4, 2, 16, 0",
            "2, 19, 4, 2, 16, 5", "1, 19, 4, 2, 16, -3", "3, 40, 6, 2, 32, 39", "1, 300, 2, 1, 64, 64",
            "1, 300, 2, 2, 64, 1"})
    void windowedAttentionMatchesReference(int B, int T, int H, int Hkv, int D, int window) {
        Random r = new Random(B * 1000L + T * 10L + window);
        int qn = B * T * H * D, kvn = B * T * Hkv * D;
        float[] q = random(r, qn, 1f), k = random(r, kvn, 1f), v = random(r, kvn, 1f);
        float[] expected = new float[qn];
        for (int b = 0; b < B; b++) {
            float[] out = new float[T * H * D];
            REF.attention(slice(q, b, T * H * D), slice(k, b, T * Hkv * D), slice(v, b, T * Hkv * D), T, T, H, Hkv, D,
                    window, out);
            System.arraycopy(out, 0, expected, b * T * H * D, out.length);
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dq = put(q); DeviceBuffer dk = put(k); DeviceBuffer dv = put(v);
             DeviceBuffer out = poisoned(qn); DeviceBuffer s = poisoned(DeviceOps.attentionScratch(T, H))) {
            d.attention(dq.address(), dk.address(), dv.address(), B, T, H, Hkv, D, window, out.address(), s);
            assertClose("attention window " + window, expected, d.downloadFloats(out, 0, qn), 1e-4 * Math.sqrt(D), 1e-4);
        }
    }

    // ---------------------------------------------------------------- fused fp16 attention

    /**
     * {@link DeviceOps#flashAttention} (fp16 tensor cores, scores never stored) against the float32
     * reference on the same inputs rounded to fp16, which leaves only the fp16 rounding of the softmax
     * weights (relative 2⁻¹¹ each) and float32 summation order: so 2e-3 of |v| ≤ 1 bounds it. Covers
     * tiles cut by T, grouped heads, several sequences, sliding windows, Gemma's scale and soft-cap,
     * peaky softmaxes (q of magnitude 4), and more sequences × heads than one launch's grid takes
     * (2100 × 32 > 65535); out is poisoned first.
     */
    @ParameterizedTest(name = "B={0} T={1} H={2} Hkv={3} D={4} window={5} scale={6} softcap={7} |q|={8}")
    @CsvSource({"1, 1, 1, 1, 32, 0, 0, 0, 1", "3, 17, 6, 2, 64, 0, 0, 0, 1", "2, 130, 4, 4, 128, 0, 0, 0, 1",
            "1, 300, 8, 2, 128, 0, 0, 0, 4", "2, 200, 4, 2, 64, 50, 0, 0, 1", "1, 129, 2, 1, 96, 0, 0.0625, 30, 4",
            "1, 70, 4, 2, 128, 64, 0, 50, 4", "1, 257, 2, 2, 128, 1, 0, 0, 1", "2, 64, 2, 1, 32, 0, 0, 0, 4",
            "2100, 2, 32, 8, 32, 0, 0, 0, 1"})
    void flashAttentionMatchesReferenceOnFp16Inputs(int B, int T, int H, int Hkv, int D, int window, double scale,
                                                     float softcap, float qMagnitude) {
        DeviceOps d = cuda.deviceOps();
        assumeTrue(d.flashSupports(D), cuda.device().name() + " has no fused fp16 attention (sm_80+)");
        double sc = scale > 0 ? scale : 1.0 / Math.sqrt(D);
        Random r = new Random(B * 1000L + T * 10L + D + window);
        int qn = B * T * H * D, kvn = B * T * Hkv * D;
        float[] q = fp16(random(r, qn, qMagnitude)), k = fp16(random(r, kvn, 1f)), v = fp16(random(r, kvn, 1f));
        float[] expected = new float[qn];
        for (int b = 0; b < B; b++) {
            float[] out = new float[T * H * D];
            REF.attention(slice(q, b, T * H * D), slice(k, b, T * Hkv * D), slice(v, b, T * Hkv * D), T, T, H, Hkv, D,
                    window, sc, softcap, out);
            System.arraycopy(out, 0, expected, b * T * H * D, out.length);
        }
        try (DeviceBuffer dq = put(q); DeviceBuffer dk = put(k); DeviceBuffer dv = put(v);
             DeviceBuffer out = poisoned(qn);
             DeviceBuffer halves = cuda.device().alloc(DeviceOps.flashScratchBytes((long) B * T, H, Hkv, D))) {
            d.flashAttention(dq.address(), dk.address(), dv.address(), B, T, H, Hkv, D, window, sc, softcap,
                    out.address(), halves);
            assertClose("flash attention", expected, d.downloadFloats(out, 0, qn), 2e-3, 2e-3);
        }
        assertThrows(IllegalArgumentException.class, () -> d.flashAttention(0, 0, 0, 1, 4, 2, 1, 48, 0, 1, 0, 0, null));
    }

    private static float[] fp16(float[] a) {
        float[] out = new float[a.length];
        for (int i = 0; i < a.length; i++) {
            out[i] = Floats.f16ToFloat(Floats.floatToF16(a[i]));
        }
        return out;
    }

    // ---------------------------------------------------------------- crossEntropy

    @ParameterizedTest(name = "M={0} V={1}")
    @CsvSource({"37, 1000", "5, 50", "1, 1", "3, 32000"})
    void crossEntropyWithIgnoredRows(int M, int V) {
        Random r = new Random(M * 7L + V);
        float[] logits = random(r, M * V, 8f);
        int[] targets = new int[M], valid = new int[M];
        for (int m = 0; m < M; m++) {
            targets[m] = m % 4 == 1 ? -1 : m == 2 ? -7 : r.nextInt(V);
            valid[m] = Math.max(0, targets[m]);
        }
        double[] expected = new double[M];
        REF.crossEntropy(logits, M, V, valid, expected);
        for (int m = 0; m < M; m++) {
            if (targets[m] < 0) {
                expected[m] = 0;
            }
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dl = put(logits); DeviceBuffer dt = cuda.device().alloc(M * 4L);
             DeviceBuffer dn = poisoned(2L * M)) {
            d.upload(targets, dt, 0);
            d.crossEntropy(dl.address(), dt.address(), M, V, dn.address());
            double[] nll = new double[M];
            cuda.device().download(dn, 0, MemorySegment.ofArray(nll));
            assertClose("crossEntropy", expected, nll, M, 1e-4, 1e-4);
            for (int m = 0; m < M; m++) {
                if (targets[m] < 0) {
                    assertEquals(0.0, nll[m], "row " + m + " with target " + targets[m]);
                }
            }
        }
    }

    // ---------------------------------------------------------------- KV cache round trip

    @ParameterizedTest(name = "{0} rows={1} heads={2} D={3}")
    @CsvSource({"INT8, 37, 3, 64", "INT4, 37, 3, 64", "INT8, 5, 2, 40", "INT4, 129, 1, 128", "INT4, 3, 4, 7",
            "INT8, 2, 4, 256", "FP16, 9, 2, 32"})
    void kvRoundTripIsTheHostsBitForBit(KvCacheType type, int rows, int heads, int D) {
        Random r = new Random(rows * 131L + heads * 17L + D + type.bits());
        int groups = rows * heads;
        float[] x = new float[groups * D];
        for (int g = 0; g < groups; g++) {
            float mag = (float) Math.pow(10, r.nextInt(6) - 3); // 1e-3 .. 1e2
            float shift = r.nextInt(3) == 0 ? (r.nextFloat() - 0.5f) * 4 * mag : 0f;
            for (int i = 0; i < D; i++) {
                x[g * D + i] = (r.nextFloat() * 2 - 1) * mag + shift;
            }
        }
        special(x, 0, D, i -> 0.3f);                                  // constant: scale 0
        special(x, 1, D, i -> i % 2 == 0 ? -0f : 0f);                  // signed zeros
        special(x, 2, D, i -> i == D / 2 ? Float.NaN : i);             // a NaN: the group is NaN
        special(x, 3, D, i -> i % 2 == 0 ? 1e5f : -1e5f + i);          // beyond fp16: Inf scale, -Inf zero
        special(x, 4, D, i -> 1e-6f * i);                              // fp16-subnormal scale
        special(x, 5, D, i -> i == 0 ? Float.POSITIVE_INFINITY : 1f);  // an Inf
        special(x, 6, D, i -> -2.5f);                                   // constant, negative
        float[] expected = x.clone();
        type.roundTrip(expected, rows, heads, D);
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dx = put(x)) {
            d.kvRoundTrip(dx.address(), rows, heads, D, type);
            float[] got = d.downloadFloats(dx, 0, x.length);
            for (int i = 0; i < x.length; i++) {
                int e = Float.floatToRawIntBits(expected[i]), a = Float.floatToRawIntBits(got[i]);
                if (e != a && !(Float.isNaN(expected[i]) && Float.isNaN(got[i]))) {
                    fail(type + " round trip of x[" + i + "] = " + x[i] + " (group " + i / D + "): " + got[i]
                            + ", expected " + expected[i]);
                }
            }
            if (type.quantized()) {
                assertTrue(!Arrays.equals(x, got), "the round trip changed nothing");
            }
        }
    }

    /** Group g of x (D values each), if x has it, set to f(i). */
    private static void special(float[] x, int g, int D, java.util.function.IntFunction<Float> f) {
        if ((g + 1) * D <= x.length) {
            for (int i = 0; i < D; i++) {
                x[g * D + i] = f.apply(i);
            }
        }
    }

    // ---------------------------------------------------------------- GPTQ dequantization

    @ParameterizedTest(name = "bits={0} K={1} N={2} group={3} actOrder={4} v1={5}")
    @CsvSource({"4, 256, 48, 64, false, true", "4, 256, 48, 64, true, true", "4, 256, 48, 64, true, false",
            "8, 128, 20, 32, true, false", "8, 96, 12, -1, false, true", "4, 64, 8, 32, false, false",
            "8, 200, 36, 50, true, true", "4, 1024, 264, 128, false, true"})
    void dequantMatchesQuantizedLinear(int bits, int K, int N, int groupSize, boolean actOrder, boolean v1) {
        Random r = new Random(bits * 1000L + K + N * 3L + groupSize + (actOrder ? 7 : 0) + (v1 ? 13 : 0));
        int G = QuantizedLinear.groups(K, groupSize), levels = 1 << bits;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = r.nextInt(levels);
        }
        int[] zeros = new int[G * N];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = v1 ? 1 + r.nextInt(levels) : r.nextInt(levels); // v1 holds 1..2^b (2^b stored as all ones)
        }
        zeros[0] = v1 ? levels : 0;
        short[] scales = new short[G * N];
        float[] scalesF = new float[G * N];
        for (int i = 0; i < scales.length; i++) {
            float s = (float) (Math.pow(10, -4 + 3 * r.nextDouble()) * (r.nextInt(8) == 0 ? -1 : 1));
            scales[i] = Floats.floatToF16(s);
        }
        scales[1] = 0x7bff;  // 65504: products overflow to Inf
        scales[2] = 0x0001;  // the smallest subnormal half
        scales[3] = (short) 0x8000;  // -0
        for (int i = 0; i < scales.length; i++) {
            scalesF[i] = Floats.f16ToFloat(scales[i]);
        }
        int[] gIdx = QuantizedLinear.sequentialGIdx(K, groupSize);
        if (actOrder) { // a permuted assignment, as act-order writes it
            for (int k = K - 1; k > 0; k--) {
                int j = r.nextInt(k + 1), t = gIdx[k];
                gIdx[k] = gIdx[j];
                gIdx[j] = t;
            }
        }
        float[] w = new QuantizedLinear("t", N, K, bits, groupSize, codes, scalesF, zeros, gIdx, null).dequantize();
        int[] qweight = GptqPacking.packQweight(codes, N, K, bits);
        int[] qzeros = GptqPacking.packQzeros(zeros, G, N, bits, v1);
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dq = putInts(qweight); DeviceBuffer dz = putInts(qzeros); DeviceBuffer ds = putShorts(scales);
             DeviceBuffer dg = putInts(gIdx); DeviceBuffer out = poisoned(((long) N * K + 1) / 2)) {
            d.dequantW4(dq.address(), dz.address(), ds.address(), actOrder ? dg.address() : 0L, K, N, groupSize, bits,
                    v1, out.address());
            short[] got = downloadShorts(out, N * K);
            for (int i = 0; i < got.length; i++) {
                short e = Floats.floatToF16(w[i]);
                if (got[i] != e) {
                    fail("W[" + i / K + ", " + i % K + "] = 0x" + Integer.toHexString(got[i] & 0xffff) + ", expected 0x"
                            + Integer.toHexString(e & 0xffff) + " (" + w[i] + ")");
                }
            }
        }
    }

    @Test
    void dequantRejectsOtherBits() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> cuda.deviceOps().dequantW4(0, 0, 0, 0, 96, 32, 32, 3, true, 0));
        assertTrue(e.getMessage().contains("bits 3"), e.getMessage());
    }

    // ---------------------------------------------------------------- helpers

    private static DeviceBuffer put(float[] a) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, a.length * 4L));
        cuda.deviceOps().upload(a, b);
        return b;
    }

    private static DeviceBuffer putInts(int[] a) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, a.length * 4L));
        cuda.deviceOps().upload(a, b, 0);
        return b;
    }

    private static DeviceBuffer putShorts(short[] a) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, a.length * 2L));
        cuda.device().upload(MemorySegment.ofArray(a), b, 0);
        return b;
    }

    private static short[] downloadShorts(DeviceBuffer b, int n) {
        short[] s = new short[n];
        cuda.device().download(b, 0, MemorySegment.ofArray(s));
        return s;
    }

    /** A buffer of {@code words} 32-bit words, all ones (float NaN, fp16 NaN pairs, double NaN). */
    private static DeviceBuffer poisoned(long words) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, words * 4));
        cuda.device().fill32(b, 0xFFFFFFFF, words);
        return b;
    }

    private static float[] slice(float[] a, int b, int len) {
        float[] s = new float[len];
        System.arraycopy(a, b * len, s, 0, len);
        return s;
    }
}
