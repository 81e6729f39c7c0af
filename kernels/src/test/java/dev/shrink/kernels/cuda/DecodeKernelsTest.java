package dev.shrink.kernels.cuda;

import static dev.shrink.kernels.cpu.Close.assertClose;
import static dev.shrink.kernels.cpu.Close.random;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.kernels.cpu.ReferenceOps;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * decode.cu's per-token kernels (DecodeBench's decoder) against {@link ReferenceOps}: RMSNorm to
 * fp16, RoPE at a device-held position with the KV-cache append, single-query attention over the
 * cache, SwiGLU to fp16, the embedding gather; and a {@link CudaGraph} of them replayed, whose
 * results must equal the eager launches' bit for bit while the device position advances. fp16
 * outputs are compared after rounding the reference to fp16 (within one fp16 step). Skipped
 * without a GPU.
 */
class DecodeKernelsTest {
    private static final ReferenceOps REF = new ReferenceOps();
    private static CudaDevice dev;
    private static CudaModule mod;
    private static String skipReason;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            return;
        }
        dev = Cuda.get().open(0);
        mod = dev.module("decode.cu");
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(dev != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (dev != null) {
            mod.close();
            dev.close();
        }
    }

    private static DeviceBuffer put(float[] a) {
        DeviceBuffer b = dev.alloc(Math.max(4, a.length * 4L));
        dev.upload(MemorySegment.ofArray(a), b, 0);
        return b;
    }

    private static DeviceBuffer put(int[] a) {
        DeviceBuffer b = dev.alloc(Math.max(4, a.length * 4L));
        dev.upload(MemorySegment.ofArray(a), b, 0);
        return b;
    }

    private static float[] floats(DeviceBuffer b, int n) {
        float[] out = new float[n];
        dev.download(b, 0, MemorySegment.ofArray(out));
        return out;
    }

    private static float[] halves(DeviceBuffer b, int n) {
        short[] h = new short[n];
        dev.download(b, 0, MemorySegment.ofArray(h));
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = Float.float16ToFloat(h[i]);
        }
        return out;
    }

    /** Each of {@code actual} within one fp16 step (2^-10 relative, 2^-24 absolute) of fp16(expected) plus {@code atol}. */
    private static void assertHalfClose(String what, float[] expected, float[] actual, double atol) {
        for (int i = 0; i < expected.length; i++) {
            float e = Float.float16ToFloat(Float.floatToFloat16(expected[i]));
            double bound = Math.abs(e) * 0x1p-10 + 0x1p-24 + atol;
            if (!(Math.abs(actual[i] - e) <= bound)) {
                throw new AssertionError(what + "[" + i + "] = " + actual[i] + ", reference " + expected[i]
                        + " (fp16 " + e + ", bound " + bound + ")");
            }
        }
    }

    @Test
    void rmsNormToHalfMatchesReference() {
        Random r = new Random(1);
        int C = 1000;
        float[] x = random(r, C, 3f), w = random(r, C, 1f), ref = new float[C];
        REF.rmsNorm(x, w, 1e-5f, 1, C, ref);
        try (DeviceBuffer dx = put(x); DeviceBuffer dw = put(w); DeviceBuffer dy = dev.alloc(C * 2L)) {
            mod.kernel("rms_norm_h").launch(1, 1, 1024, 0, dx, dw, dy, C, 1e-5f);
            assertHalfClose("rms_norm_h", ref, halves(dy, C), 1e-6);
        }
    }

    @Test
    void ropeAppendRotatesAtTheDevicePositionAndFillsThatCacheRow() {
        Random r = new Random(2);
        int H = 4, Hkv = 2, D = 16, Tmax = 8, p = 5, half = D / 2;
        float[] qkv = random(r, (H + 2 * Hkv) * D, 1f);
        float[] cos = new float[Tmax * half], sin = new float[Tmax * half];
        for (int t = 0; t < Tmax; t++) {
            for (int i = 0; i < half; i++) {
                double a = t / Math.pow(10000, 2.0 * i / D);
                cos[t * half + i] = (float) Math.cos(a);
                sin[t * half + i] = (float) Math.sin(a);
            }
        }
        float[] q = Arrays.copyOfRange(qkv, 0, H * D), k = Arrays.copyOfRange(qkv, H * D, (H + Hkv) * D);
        float[] v = Arrays.copyOfRange(qkv, (H + Hkv) * D, qkv.length);
        REF.rope(q, 1, H, D, new int[] {p}, cos, sin);
        REF.rope(k, 1, Hkv, D, new int[] {p}, cos, sin);
        float[] nan = new float[Tmax * Hkv * D];
        Arrays.fill(nan, Float.NaN);
        try (DeviceBuffer dqkv = put(qkv); DeviceBuffer kc = put(nan); DeviceBuffer vc = put(nan);
             DeviceBuffer dc = put(cos); DeviceBuffer ds = put(sin); DeviceBuffer pos = put(new int[] {p})) {
            mod.kernel("rope_append").launch(2, 1, 64, 0, dqkv, kc, vc, dc, ds, pos, H, Hkv, D);
            assertClose("q", q, Arrays.copyOf(floats(dqkv, qkv.length), H * D), 1e-6, 1e-6);
            float[] kcache = floats(kc, nan.length), vcache = floats(vc, nan.length);
            assertClose("k row", k, Arrays.copyOfRange(kcache, p * Hkv * D, (p + 1) * Hkv * D), 1e-6, 1e-6);
            assertArrayEquals(v, Arrays.copyOfRange(vcache, p * Hkv * D, (p + 1) * Hkv * D), "v row");
            for (int i = 0; i < nan.length; i++) {
                if (i / (Hkv * D) != p) {
                    assertEquals(Float.NaN, kcache[i], "k cache row " + i / (Hkv * D) + " touched");
                    assertEquals(Float.NaN, vcache[i], "v cache row " + i / (Hkv * D) + " touched");
                }
            }
        }
    }

    @Test
    void singleQueryAttentionOverTheCacheMatchesReference() {
        Random r = new Random(3);
        int H = 8, Hkv = 2, D = 64, Tmax = 41;
        for (int p : new int[] {0, 17, Tmax - 1}) {
            float[] q = random(r, H * D, 1f), kc = random(r, Tmax * Hkv * D, 1f), vc = random(r, Tmax * Hkv * D, 1f);
            float[] ref = new float[H * D];
            REF.attention(q, Arrays.copyOf(kc, (p + 1) * Hkv * D), Arrays.copyOf(vc, (p + 1) * Hkv * D), 1, p + 1, H,
                    Hkv, D, ref);
            int warps = 8;
            try (DeviceBuffer dq = put(q); DeviceBuffer dk = put(kc); DeviceBuffer dv = put(vc);
                 DeviceBuffer out = dev.alloc(H * D * 2L); DeviceBuffer pos = put(new int[] {p})) {
                mod.kernel("attention_decode").launch(H, 1, 32 * warps, (((Tmax + 3) & ~3) + warps * D) * 4, dq, dk, dv, out, pos,
                        H, Hkv, D, (float) (1 / Math.sqrt(D)), Tmax);
                assertHalfClose("attention at position " + p, ref, halves(out, H * D), 1e-5);
            }
        }
    }

    @Test
    void swigluToHalfAndEmbeddingGather() {
        Random r = new Random(4);
        int n = 777, V = 50, C = 96;
        float[] gu = random(r, 2 * n, 4f), ref = new float[n];
        REF.swiglu(Arrays.copyOf(gu, n), Arrays.copyOfRange(gu, n, 2 * n), n, ref);
        short[] E = new short[V * C];
        for (int i = 0; i < E.length; i++) {
            E[i] = Float.floatToFloat16((float) r.nextGaussian());
        }
        try (DeviceBuffer dgu = put(gu); DeviceBuffer out = dev.alloc(n * 2L); DeviceBuffer dE = dev.alloc(E.length * 2L);
             DeviceBuffer toks = put(new int[] {3, 41, 7}); DeviceBuffer pos = put(new int[] {1});
             DeviceBuffer x = dev.alloc(C * 4L)) {
            mod.kernel("swiglu_h").launch(4, 1, 256, 0, dgu, out, n);
            assertHalfClose("swiglu_h", ref, halves(out, n), 1e-6);
            dev.upload(MemorySegment.ofArray(E), dE, 0);
            mod.kernel("embed_token").launch(1, 1, 64, 0, dE, toks, pos, x, C);
            float[] row = floats(x, C);
            for (int c = 0; c < C; c++) {
                assertEquals(Float.float16ToFloat(E[41 * C + c]), row[c], "embedding of token 41, column " + c);
            }
        }
    }

    @Test
    void aCapturedGraphReplaysTheSameWorkWithTheDevicePositionAdvancing() {
        Random r = new Random(5);
        int H = 4, Hkv = 4, D = 32, Tmax = 6, half = D / 2;
        float[] qkv0 = random(r, (H + 2 * Hkv) * D, 1f), cos = random(r, Tmax * half, 1f), sin = random(r, Tmax * half, 1f);
        float[] zeros = new float[Tmax * Hkv * D];
        try (DeviceBuffer src = put(qkv0); DeviceBuffer qkv = put(qkv0); DeviceBuffer kc = put(zeros);
             DeviceBuffer vc = put(zeros);
             DeviceBuffer dc = put(cos); DeviceBuffer ds = put(sin); DeviceBuffer pos = put(new int[] {0});
             DeviceBuffer out = dev.alloc(H * D * 2L)) {
            CudaKernel rope = mod.kernel("rope_append"), att = mod.kernel("attention_decode"), adv = mod.kernel("advance");
            Runnable token = () -> {
                dev.copy(src, 0, qkv, 0, qkv0.length * 4L); // fresh q|k|v each token (a copy node in the graph)
                rope.launch(2, 1, 128, 0, qkv, kc, vc, dc, ds, pos, H, Hkv, D);
                att.launch(H, 1, 64, (((Tmax + 3) & ~3) + 2 * D) * 4, qkv, kc, vc, out, pos, H, Hkv, D, 0.2f, Tmax);
                adv.launch(1, 1, 1, 0, pos);
            };
            float[][] eager = new float[Tmax][];
            for (int t = 0; t < Tmax; t++) {
                token.run();
                eager[t] = halves(out, H * D);
            }
            float[] kEager = floats(kc, zeros.length);
            dev.upload(MemorySegment.ofArray(zeros), kc, 0);
            dev.upload(MemorySegment.ofArray(zeros), vc, 0);
            dev.upload(MemorySegment.ofArray(new int[] {0}), pos, 0);
            try (CudaGraph g = CudaGraph.capture(dev, token)) {
                for (int t = 0; t < Tmax; t++) {
                    g.launch();
                    assertArrayEquals(eager[t], halves(out, H * D), "token " + t + ": graph replay vs eager");
                }
            }
            assertArrayEquals(kEager, floats(kc, zeros.length), "k cache after the replays");
            int[] p = new int[1];
            dev.download(pos, 0, MemorySegment.ofArray(p));
            assertEquals(Tmax, p[0], "device position after " + Tmax + " replays");
        }
    }
}
