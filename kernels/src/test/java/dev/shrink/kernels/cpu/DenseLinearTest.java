package dev.shrink.kernels.cpu;

import static dev.shrink.kernels.cpu.DenseLinearCases.dense;
import static dev.shrink.kernels.cpu.DenseLinearCases.linearThenBias;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shrink.core.ops.LinearKernel;
import dev.shrink.kernels.cpu.DenseLinearCases.Case;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link DenseLinear} against the CPU backend's linear followed by adding the bias, as the forward
 * does it today (bit for bit), against a scalar statement of its summation order (bit for bit: it
 * names no vector width, tile or thread count), for thread counts 1 to 5, and in JVMs limited to 4
 * and 8 float lanes.
 */
class DenseLinearTest {
    private static final long SEED = 20240611L;

    /**
     * The order DenseLinear promises, in scalar code: K cut into ⌈K / ⌈K/384⌉⌉-column blocks; per
     * block a chain of fused multiply-adds over the columns in order from +0; the block sums added
     * in order; then the bias.
     */
    private static float[] scalarOrder(Case c) {
        int N = c.N(), K = c.K();
        int kc = (K + (K + 383) / 384 - 1) / ((K + 383) / 384);
        float[] y = new float[c.M() * N];
        for (int m = 0; m < c.M(); m++) {
            for (int n = 0; n < N; n++) {
                float total = 0f;
                for (int pc = 0; pc < K; pc += kc) {
                    float acc = 0f;
                    for (int k = pc; k < Math.min(K, pc + kc); k++) {
                        acc = Math.fma(c.x()[m * K + k], c.W()[n * K + k], acc);
                    }
                    total = pc == 0 ? acc : total + acc;
                }
                y[m * N + n] = c.bias() == null ? total : total + c.bias()[n];
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
    void bitIdenticalToTheBackendsLinearAndToTheScalarOrderForOneToFiveThreads() {
        VectorOps ops = new VectorOps(2);
        List<Case> cases = DenseLinearCases.cases(SEED);
        for (int threads = 1; threads <= 5; threads++) {
            WorkerPool pool = new WorkerPool(threads);
            for (Case c : cases) {
                float[] y = dense(c, pool);
                String what = c.label() + ", " + threads + " threads";
                assertBits(linearThenBias(ops, c), y, what + " vs VectorOps.linear + bias");
                assertBits(scalarOrder(c), y, what + " vs the scalar order");
            }
        }
    }

    @Test
    void theBackendsDenseKernelGivesItsOwnLinearsBits() {
        VectorOps ops = new VectorOps(3);
        for (Case c : DenseLinearCases.cases(SEED + 1)) {
            LinearKernel k = ops.dense(c.W(), c.N(), c.K(), c.bias());
            assertNotNull(k, "VectorOps.dense");
            float[] y = Close.nans(c.M() * c.N());
            k.apply(c.x(), c.M(), y);
            assertBits(linearThenBias(ops, c), y, c.label() + ": VectorOps.dense vs VectorOps.linear + bias");
        }
        Case c = DenseLinearCases.random(new Random(SEED), 8, 16, 1, false);
        assertNull(new ReferenceOps().dense(c.W(), c.N(), c.K(), c.bias()), "the reference backend has no dense kernel");
    }

    @Test
    void largerProductsSplitOverThreadsAndBlocksGiveTheSameBits() {
        // big enough that M ≥ 2 splits into several regions and blocks of NC columns, and M = 1 into tasks
        Random rnd = new Random(SEED + 2);
        VectorOps ops = new VectorOps(3);
        for (int M : new int[] {1, 2, 130}) {
            Case c = DenseLinearCases.random(rnd, 1100, 800, M, true);
            float[] y1 = dense(c, new WorkerPool(1));
            assertBits(linearThenBias(ops, c), y1, c.label() + " vs VectorOps");
            assertBits(y1, dense(c, new WorkerPool(3)), c.label() + ", 3 threads vs 1");
        }
    }

    @Test
    void theDataTellApartAnotherSummationOrder() {
        // one chain over all of K (no blocks of 384) rounds differently on these inputs: the
        // bit-for-bit checks above can fail
        Case c = DenseLinearCases.random(new Random(SEED + 3), 40, 1000, 1, false);
        float[] y = dense(c, new WorkerPool(1));
        int differ = 0;
        for (int n = 0; n < c.N(); n++) {
            float acc = 0f;
            for (int k = 0; k < c.K(); k++) {
                acc = Math.fma(c.x()[k], c.W()[n * c.K() + k], acc);
            }
            differ += Float.floatToRawIntBits(acc) != Float.floatToRawIntBits(y[n]) ? 1 : 0;
        }
        assertTrue(differ > 0, "a single chain over K matched all " + c.N() + " outputs");
    }

    @Test
    void theSameBitsWithFourAndEightLanes() throws Exception {
        String here = DenseLinearCases.digest(DenseLinearCases.cases(SEED + 4));
        for (int maxVectorBytes : new int[] {16, 32}) {
            String out = ForkedJvm.run(DenseLinearCases.class, maxVectorBytes, Long.toString(SEED + 4));
            int lanes = maxVectorBytes / 4;
            assertTrue(out.contains("lanes " + Math.min(lanes, PanelLinear.L)), "-XX:MaxVectorSize=" + maxVectorBytes
                    + " ran with other lanes:\n" + out);
            assertTrue(out.contains("digest " + here), "-XX:MaxVectorSize=" + maxVectorBytes + " (" + lanes
                    + " lanes) gave other bits than " + PanelLinear.L + " lanes (digest " + here + "):\n" + out);
            assertTrue(out.contains("differing from VectorOps 0"), "-XX:MaxVectorSize=" + maxVectorBytes
                    + ": DenseLinear and VectorOps differ there:\n" + out);
        }
    }

    @Test
    void theWeightsAreCopiedNotKept() {
        Case c = DenseLinearCases.random(new Random(SEED + 5), 70, 300, 3, true);
        float[] expected = linearThenBias(new VectorOps(1), c);
        DenseLinear d = DenseLinear.of(c.W(), c.N(), c.K(), c.bias());
        java.util.Arrays.fill(c.W(), Float.NaN);
        java.util.Arrays.fill(c.bias(), Float.NaN);
        float[] y = Close.nans(c.M() * c.N());
        d.apply(c.x(), c.M(), y, new WorkerPool(2));
        assertBits(expected, y, "after the caller's W and bias were overwritten");
    }

    @Test
    void memoryIsTheFloatWeightsPlusAtMostOnePanelsPadding() {
        Random rnd = new Random(SEED + 6);
        for (int[] s : new int[][] {{384, 384}, {1024, 384}, {384, 1024}, {100, 37}}) {
            int N = s[0], K = s[1];
            long weights = 4L * N * K, bias = 4L * N;
            long bytes = DenseLinear.of(DenseLinearCases.input(rnd, N * K), N, K, DenseLinearCases.input(rnd, N)).bytes();
            assertTrue(bytes >= weights + bias && bytes < weights + bias + 4L * PanelLinear.P * K,
                    N + "x" + K + ": " + bytes + " bytes, expected " + (weights + bias) + " plus under one panel");
        }
    }

    @Test
    void bfloat16WeightsAreHeldInHalfTheMemory() {
        Random rnd = new Random(SEED + 7);
        for (int[] s : new int[][] {{384, 384}, {1024, 385}, {100, 37}}) {
            int N = s[0], K = s[1];
            Case c = DenseLinearCases.bf16(DenseLinearCases.random(rnd, N, K, 1, false));
            DenseLinear d = DenseLinear.of(c.W(), N, K, null);
            assertTrue(d.bf16(), N + "x" + K + " of bfloat16 values: held as float32");
            long half = 2L * N * K;
            assertTrue(d.bytes() >= half && d.bytes() < half + 4L * PanelLinear.P * K, N + "x" + K + ": " + d.bytes()
                    + " bytes, expected " + half + " plus under one panel");
            assertEquals(java.util.Arrays.toString(c.W()), java.util.Arrays.toString(d.weights()), "weights read back");
            float[] row = new float[K + 3];
            for (int n : new int[] {0, N / 2, N - 1}) {
                d.row(n, row, 3);
                assertEquals(java.util.Arrays.toString(java.util.Arrays.copyOfRange(c.W(), n * K, n * K + K)),
                        java.util.Arrays.toString(java.util.Arrays.copyOfRange(row, 3, K + 3)), "row " + n);
            }
            c.W()[N * K - 1] = Math.nextUp(1f); // one weight that bfloat16 cannot hold
            DenseLinear f = DenseLinear.of(c.W(), N, K, null);
            assertTrue(!f.bf16(), N + "x" + K + " with a float32 weight: held as bfloat16");
            f.row(N - 1, row, 3);
            assertEquals(java.util.Arrays.toString(java.util.Arrays.copyOfRange(c.W(), (N - 1) * K, N * K)),
                    java.util.Arrays.toString(java.util.Arrays.copyOfRange(row, 3, K + 3)), "float32 row " + (N - 1));
        }
    }

    @Test
    void badShapesAreRefused() {
        float[] w = new float[16 * 64];
        assertThrows(IllegalArgumentException.class, () -> DenseLinear.of(w, 16, 63, null));
        assertThrows(IllegalArgumentException.class, () -> DenseLinear.of(w, 16, 64, new float[15]));
        assertThrows(IllegalArgumentException.class, () -> DenseLinear.of(new float[0], 0, 64, null));
        DenseLinear d = DenseLinear.of(w, 16, 64, null);
        WorkerPool pool = new WorkerPool(1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> d.apply(new float[64], 2, new float[32], pool));
        assertTrue(e.getMessage().contains("[16, 64]"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> d.apply(new float[128], 2, new float[31], pool));
    }
}
