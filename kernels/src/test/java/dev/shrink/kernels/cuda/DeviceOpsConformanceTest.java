package dev.shrink.kernels.cuda;

import static dev.shrink.kernels.cpu.Close.assertClose;
import static dev.shrink.kernels.cpu.Close.random;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.kernels.cpu.ReferenceOps;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link DeviceOps} (tensors resident on the GPU) against {@link ReferenceOps}: the batched-GEMM
 * attention over several sequences with grouped KV heads, RoPE by position within each sequence,
 * the embedding gather, bias, the NaN/Inf check, and the GEMM in float32 and in TF32 (whose error
 * must be larger than float32's and within TF32's bound). Device outputs are poisoned with NaN
 * first. Skipped without a GPU.
 */
class DeviceOpsConformanceTest {
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

    private static DeviceBuffer put(float[] a) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, a.length * 4L));
        cuda.deviceOps().upload(a, b);
        return b;
    }

    private static DeviceBuffer poisoned(long floats) {
        DeviceBuffer b = cuda.device().alloc(Math.max(4, floats * 4));
        cuda.device().fill32(b, 0xFFFFFFFF, floats);
        return b;
    }

    @ParameterizedTest(name = "B={0} T={1} H={2} Hkv={3} D={4}")
    @CsvSource({"1, 1, 1, 1, 8", "3, 17, 6, 2, 64", "2, 128, 4, 4, 32", "1, 300, 8, 2, 128", "4, 33, 3, 1, 16"})
    void attentionOverSequencesMatchesReference(int B, int T, int H, int Hkv, int D) {
        Random r = new Random(B * 1000L + T * 10L + H);
        int qn = B * T * H * D, kvn = B * T * Hkv * D;
        float[] q = random(r, qn, 1f), k = random(r, kvn, 1f), v = random(r, kvn, 1f);
        float[] expected = new float[qn];
        for (int b = 0; b < B; b++) { // each sequence on its own, from position 0
            float[] out = new float[T * H * D];
            REF.attention(slice(q, b, T * H * D), slice(k, b, T * Hkv * D), slice(v, b, T * Hkv * D), T, T, H, Hkv, D, out);
            System.arraycopy(out, 0, expected, b * T * H * D, out.length);
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dq = put(q); DeviceBuffer dk = put(k); DeviceBuffer dv = put(v);
             DeviceBuffer out = poisoned(qn); DeviceBuffer s = poisoned(DeviceOps.attentionScratch(T, H))) {
            d.attention(dq.address(), dk.address(), dv.address(), B, T, H, Hkv, D, out.address(), s);
            assertClose("attention", expected, d.downloadFloats(out, 0, qn), 1e-4 * Math.sqrt(D), 1e-4);
        }
    }

    @Test
    void ropeRestartsAtEachSequence() {
        int B = 3, T = 11, heads = 4, D = 16, half = D / 2;
        Random r = new Random(5);
        float[] x = random(r, B * T * heads * D, 1f);
        float[] cos = new float[T * half], sin = new float[T * half];
        for (int p = 0; p < T; p++) {
            for (int i = 0; i < half; i++) {
                double angle = p * Math.pow(10000, -2.0 * i / D);
                cos[p * half + i] = (float) Math.cos(angle);
                sin[p * half + i] = (float) Math.sin(angle);
            }
        }
        float[] expected = x.clone();
        int[] pos = new int[T];
        for (int t = 0; t < T; t++) {
            pos[t] = t;
        }
        for (int b = 0; b < B; b++) {
            float[] xb = slice(expected, b, T * heads * D);
            REF.rope(xb, T, heads, D, pos, cos, sin);
            System.arraycopy(xb, 0, expected, b * T * heads * D, xb.length);
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dx = put(x); DeviceBuffer dc = put(cos); DeviceBuffer ds = put(sin)) {
            d.ropeSequences(dx.address(), (long) B * T, heads, D, T, dc.address(), ds.address());
            assertClose("rope", expected, d.downloadFloats(dx, 0, x.length), 1e-6, 1e-6);
        }
    }

    @Test
    void embedGatherAndBias() {
        int V = 50, C = 24, M = 37;
        Random r = new Random(9);
        float[] E = random(r, V * C, 1f), bias = random(r, C, 1f);
        int[] ids = new int[M];
        float[] expected = new float[M * C];
        for (int m = 0; m < M; m++) {
            ids[m] = r.nextInt(V);
            for (int c = 0; c < C; c++) {
                expected[m * C + c] = E[ids[m] * C + c] + bias[c];
            }
        }
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer dE = put(E); DeviceBuffer dIds = cuda.device().alloc(M * 4L); DeviceBuffer db = put(bias);
             DeviceBuffer x = poisoned((long) M * C)) {
            d.upload(ids, dIds, 0);
            d.embed(dE.address(), dIds.address(), M, C, x.address());
            assertFalse(d.anyNonFinite(x.address(), (long) M * C));
            d.addBias(x.address(), db.address(), M, C);
            assertClose("embed + bias", expected, d.downloadFloats(x, 0, M * C), 0, 0);
            cuda.device().fill32(x, 0x7F800000, 1); // +Inf in element 0
            assertTrue(d.anyNonFinite(x.address(), (long) M * C));
        }
    }

    /** TF32 products: an error well above float32's and within 1e-2·sqrt(K) relative to Σ|a·b| (10-bit mantissas). */
    @Test
    void tf32GemmIsTf32() {
        int M = 64, N = 96, K = 512;
        Random r = new Random(3);
        float[] a = random(r, M * K, 1f), b = random(r, N * K, 1f);
        float[] expected = new float[M * N];
        REF.gemm(false, true, M, N, K, 1f, a, 0, K, b, 0, K, 0f, expected, 0, N);
        DeviceOps d = cuda.deviceOps();
        try (DeviceBuffer da = put(a); DeviceBuffer db = put(b); DeviceBuffer c = poisoned((long) M * N)) {
            d.linear(da.address(), M, K, db.address(), N, c.address(), 0f);
            float[] fp32 = d.downloadFloats(c, 0, M * N);
            cuda.setMath(GemmMath.TF32);
            d.linear(da.address(), M, K, db.address(), N, c.address(), 0f);
            float[] tf32 = d.downloadFloats(c, 0, M * N);
            double e32 = 0, etf = 0;
            for (int i = 0; i < M * N; i++) {
                e32 = Math.max(e32, Math.abs(fp32[i] - expected[i]));
                etf = Math.max(etf, Math.abs(tf32[i] - expected[i]));
            }
            assertTrue(e32 < 1e-4 * Math.sqrt(K), "fp32 error " + e32);
            assertTrue(etf > 10 * e32, "tf32 error " + etf + " not above fp32's " + e32 + ": tensor cores unused?");
            assertTrue(etf < 1e-2 * Math.sqrt(K), "tf32 error " + etf);
            assertTrue(cuda.name().endsWith(", tf32)"), cuda.name());
        }
    }

    private static float[] slice(float[] a, int b, int len) {
        float[] s = new float[len];
        System.arraycopy(a, b * len, s, 0, len);
        return s;
    }
}
