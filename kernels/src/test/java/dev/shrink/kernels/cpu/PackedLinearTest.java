package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.kernels.cpu.PackedLinearCases.Case;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link PackedLinear} against the CPU backend's linear on the dequantized weights (bit for bit),
 * against a scalar statement of its summation order (bit for bit: it names no vector width, tile
 * or thread count), against {@link ReferenceOps} (to float32 rounding), across thread counts, and
 * in JVMs limited to 4 and 8 float lanes.
 */
class PackedLinearTest {
    private static final long SEED = 20240607L;

    /** What the forward computes today: the backend's linear on q.dequantize(), then y += bias. */
    private static float[] dequantizedLinear(dev.shrink.core.ops.Ops ops, QuantizedLinear q, float[] x, int M) {
        float[] y = Close.nans(M * q.N());
        ops.linear(x, M, q.K(), q.dequantize(), q.N(), y);
        if (q.bias() != null) {
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < q.N(); n++) {
                    y[m * q.N() + n] += q.bias()[n];
                }
            }
        }
        return y;
    }

    private static float[] packed(QuantizedLinear q, float[] x, int M, WorkerPool pool) {
        float[] y = Close.nans(M * q.N());
        PackedLinear.of(q).apply(x, M, y, pool);
        return y;
    }

    /**
     * The order PackedLinear promises, in scalar code: K cut into ⌈K / ⌈K/384⌉⌉-column blocks; per
     * block a chain of fused multiply-adds over the columns in order from +0, with the weight
     * {@code scale · (float) (code − zero)}; the block sums added in order; then the bias.
     */
    private static float[] scalarOrder(QuantizedLinear q, float[] x, int M) {
        int N = q.N(), K = q.K();
        int kc = (K + (K + 383) / 384 - 1) / ((K + 383) / 384);
        float[] y = new float[M * N];
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                float total = 0f;
                for (int pc = 0; pc < K; pc += kc) {
                    float acc = 0f;
                    for (int k = pc; k < Math.min(K, pc + kc); k++) {
                        int g = q.gIdx()[k] * N + n;
                        float w = q.scales()[g] * (float) (q.codes()[n * K + k] - q.zeros()[g]);
                        acc = Math.fma(x[m * K + k], w, acc);
                    }
                    total = pc == 0 ? acc : total + acc;
                }
                y[m * N + n] = q.bias() == null ? total : total + q.bias()[n];
            }
        }
        return y;
    }

    private static void assertBits(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": lengths");
        for (int i = 0; i < expected.length; i++) {
            if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i])) {
                fail(what + ": element " + i + " is " + actual[i] + ", expected " + expected[i] + " bit for bit");
            }
        }
    }

    @Test
    void bitIdenticalToTheBackendOnDequantizedWeightsAndToTheScalarOrder() {
        VectorOps ops = new VectorOps(2);
        WorkerPool pool = new WorkerPool(2);
        for (Case c : PackedLinearCases.cases(SEED)) {
            float[] y = packed(c.q(), c.x(), c.M(), pool);
            assertBits(dequantizedLinear(ops, c.q(), c.x(), c.M()), y, c.label() + " vs VectorOps on dequantize()");
            assertBits(scalarOrder(c.q(), c.x(), c.M()), y, c.label() + " vs the scalar order");
        }
    }

    @Test
    void closeToTheReferenceBackend() {
        ReferenceOps ref = new ReferenceOps();
        WorkerPool pool = new WorkerPool(1);
        for (Case c : PackedLinearCases.cases(SEED + 1)) {
            QuantizedLinear q = c.q();
            float[] expected = dequantizedLinear(ref, q, c.x(), c.M());
            float[] actual = packed(q, c.x(), c.M(), pool);
            float[] w = q.dequantize();
            for (int m = 0; m < c.M(); m++) {
                for (int n = 0; n < q.N(); n++) {
                    // float32 summation bound: K·u·Σ|x·w| (u = 2⁻²⁴), plus the bias's rounding
                    double abs = q.bias() == null ? 0 : Math.abs(q.bias()[n]);
                    for (int k = 0; k < q.K(); k++) {
                        abs += Math.abs((double) c.x()[m * q.K() + k] * w[n * q.K() + k]);
                    }
                    int i = m * q.N() + n;
                    double bound = (q.K() + 2) * 0x1p-24 * abs;
                    if (!(Math.abs(actual[i] - expected[i]) <= bound)) {
                        fail(c.label() + " vs ReferenceOps: element " + i + " is " + actual[i] + ", expected "
                                + expected[i] + " within " + bound);
                    }
                }
            }
        }
    }

    @Test
    void theSameBitsForEveryThreadCount() {
        List<Case> cases = PackedLinearCases.cases(SEED + 2);
        WorkerPool one = new WorkerPool(1);
        for (int threads : new int[] {2, 3, 5}) {
            WorkerPool many = new WorkerPool(threads);
            for (Case c : cases) {
                assertBits(packed(c.q(), c.x(), c.M(), one), packed(c.q(), c.x(), c.M(), many),
                        c.label() + " with " + threads + " threads vs 1");
            }
        }
    }

    @Test
    void largerProductsSplitOverThreadsAndBlocksGiveTheSameBits() {
        // big enough that M ≥ 2 splits into several regions and dequantized blocks of NC columns
        Random rnd = new Random(SEED + 3);
        QuantizedLinear q = PackedLinearCases.random(rnd, 1100, 800, 4, 128, true, false, true);
        VectorOps ops = new VectorOps(3);
        for (int M : new int[] {1, 2, 130}) {
            float[] x = PackedLinearCases.input(rnd, M * q.K());
            float[] y1 = packed(q, x, M, new WorkerPool(1));
            assertBits(dequantizedLinear(ops, q, x, M), y1, "N=1100 K=800 M=" + M + " vs VectorOps");
            assertBits(y1, packed(q, x, M, new WorkerPool(3)), "N=1100 K=800 M=" + M + ", 3 threads vs 1");
        }
    }

    @Test
    void theDataTellApartAnotherSummationOrder() {
        // one chain over all of K (no blocks of 384) rounds differently on these inputs: the
        // bit-for-bit checks above can fail
        Random rnd = new Random(SEED + 4);
        QuantizedLinear q = PackedLinearCases.random(rnd, 40, 1000, 4, 128, false, false, false);
        float[] x = PackedLinearCases.input(rnd, q.K());
        float[] y = packed(q, x, 1, new WorkerPool(1));
        float[] w = q.dequantize();
        int differ = 0;
        for (int n = 0; n < q.N(); n++) {
            float acc = 0f;
            for (int k = 0; k < q.K(); k++) {
                acc = Math.fma(x[k], w[n * q.K() + k], acc);
            }
            differ += Float.floatToRawIntBits(acc) != Float.floatToRawIntBits(y[n]) ? 1 : 0;
        }
        assertTrue(differ > 0, "a single chain over K matched all " + q.N() + " outputs");
    }

    @Test
    void theSameBitsWithFourAndEightLanes() throws Exception {
        String here = PackedLinearCases.digest(PackedLinearCases.cases(SEED + 5));
        for (int maxVectorBytes : new int[] {16, 32}) {
            String out = fork(maxVectorBytes, SEED + 5);
            int lanes = maxVectorBytes / 4;
            assertTrue(out.contains("lanes " + Math.min(lanes, PackedLinear.L)), "-XX:MaxVectorSize=" + maxVectorBytes
                    + " ran with other lanes:\n" + out);
            assertTrue(out.contains("digest " + here), "-XX:MaxVectorSize=" + maxVectorBytes + " (" + lanes
                    + " lanes) gave other bits than " + PackedLinear.L + " lanes (digest " + here + "):\n" + out);
        }
    }

    /** Runs {@link PackedLinearCases#main} in a JVM with this one's module flags and the given vector size. */
    private static String fork(int maxVectorBytes, long seed) throws Exception {
        return ForkedJvm.run(PackedLinearCases.class, maxVectorBytes, Long.toString(seed));
    }

    @Test
    void otherBitWidthsAreRefusedByName() {
        Random rnd = new Random(SEED + 6);
        for (int bits : new int[] {2, 3}) {
            QuantizedLinear q = PackedLinearCases.random(rnd, 8, 64, bits, 32, false, false, false);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PackedLinear.of(q));
            assertTrue(e.getMessage().contains("bits " + bits) && e.getMessage().contains(q.name()), e.getMessage());
        }
    }

    @Test
    void memoryIsTheCodesAtTheirWidthPlusTheGroupParameters() {
        Random rnd = new Random(SEED + 7);
        int N = 1024, K = 384;
        for (int bits : new int[] {4, 8}) {
            for (int group : new int[] {32, 128, -1}) {
                QuantizedLinear q = PackedLinearCases.random(rnd, N, K, bits, group, false, false, false);
                long codes = (long) N * K * bits / 8;
                long groups = 8L * q.groupCount() * N; // a float scale and zero per group and row
                long bytes = PackedLinear.of(q).bytes();
                assertTrue(bytes >= codes + groups && bytes <= (codes + groups) * 1.02,
                        bits + "-bit group " + group + ": " + bytes + " bytes, expected about " + (codes + groups));
                assertTrue(bytes < 4L * N * K / 2, bits + "-bit: " + bytes + " bytes is not well under float32's " + 4L * N * K);
            }
        }
    }

    @Test
    void badShapesAreRefused() {
        QuantizedLinear q = PackedLinearCases.random(new Random(1), 16, 64, 4, 32, false, true, false);
        PackedLinear p = PackedLinear.of(q);
        WorkerPool pool = new WorkerPool(1);
        assertThrows(IllegalArgumentException.class, () -> p.apply(new float[64], 2, new float[32], pool));
        assertThrows(IllegalArgumentException.class, () -> p.apply(new float[128], 2, new float[31], pool));
    }
}
