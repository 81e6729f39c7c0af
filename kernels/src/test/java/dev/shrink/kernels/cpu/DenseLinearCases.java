package dev.shrink.kernels.cpu;

import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;

/**
 * Random float32 linears for {@link DenseLinearTest}, and a main that prints the SHA-256 of
 * {@link DenseLinear}'s outputs on all of them and how many differ from {@link VectorOps}'s linear
 * there, which the test runs in JVMs of other vector widths.
 */
public final class DenseLinearCases {
    private DenseLinearCases() {
    }

    /** One problem: W [N, K], a bias or null, an input of M rows. */
    record Case(String label, float[] W, int N, int K, float[] bias, float[] x, int M) {
    }

    /**
     * Shapes around the vector widths and the panels (N and K not multiples of 4, 8, 16, 32; N from
     * one row to several panels of 16 and 32 rows, so M = 1 runs its four-panel and one-panel loops;
     * K over Sgemm's block of 384, so that K is cut in blocks, 385 into two uneven ones), M = 1, 2,
     * 3, 17 and 64 for each, with a bias every other case; then each shape once more with
     * bfloat16 weights (DenseLinear's half-size layout: odd K, K blocks of odd depth, 385 and 775).
     */
    static List<Case> cases(long seed) {
        Random rnd = new Random(seed);
        int[][] shapes = {{1, 7}, {37, 100}, {64, 128}, {50, 420}, {33, 1000}, {129, 264}, {300, 385}, {20, 775}};
        List<Case> out = new ArrayList<>();
        int i = 0;
        for (boolean bf16 : new boolean[] {false, true}) {
            for (int[] s : shapes) {
                for (int M : new int[] {1, 2, 3, 17, 64}) {
                    boolean bias = i++ % 2 == 0;
                    Case c = random(rnd, s[0], s[1], M, bias);
                    out.add(bf16 ? bf16(c) : c);
                }
            }
        }
        return out;
    }

    /** c with its weights cut to bfloat16 (the low 16 bits cleared), as a bf16 folder's read as float32. */
    static Case bf16(Case c) {
        float[] w = c.W().clone();
        for (int i = 0; i < w.length; i++) {
            w[i] = Float.intBitsToFloat(Float.floatToRawIntBits(w[i]) & 0xFFFF0000);
        }
        return new Case(c.label() + " bf16", w, c.N(), c.K(), c.bias(), c.x(), c.M());
    }

    static Case random(Random rnd, int N, int K, int M, boolean bias) {
        String label = "N=" + N + " K=" + K + " M=" + M + (bias ? " bias" : "");
        return new Case(label, input(rnd, N * K), N, K, bias ? input(rnd, N) : null, input(rnd, M * K), M);
    }

    /** Values of mixed magnitudes (four decades, both signs), so that different summation orders round differently. */
    static float[] input(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (rnd.nextFloat() * 2 - 1) * (float) Math.pow(10, rnd.nextInt(4) - 2);
        }
        return x;
    }

    /** What the forward computes today: the backend's linear on W, then y[m, n] += bias[n]. */
    static float[] linearThenBias(dev.shrink.core.ops.Ops ops, Case c) {
        float[] y = Close.nans(c.M() * c.N());
        ops.linear(c.x(), c.M(), c.K(), c.W(), c.N(), y);
        if (c.bias() != null) {
            for (int m = 0; m < c.M(); m++) {
                for (int n = 0; n < c.N(); n++) {
                    y[m * c.N() + n] += c.bias()[n];
                }
            }
        }
        return y;
    }

    static float[] dense(Case c, WorkerPool pool) {
        float[] y = Close.nans(c.M() * c.N());
        DenseLinear.of(c.W(), c.N(), c.K(), c.bias()).apply(c.x(), c.M(), y, pool);
        return y;
    }

    static boolean sameBits(float[] a, float[] b) {
        if (a.length != b.length) {
            return false;
        }
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
                return false;
            }
        }
        return true;
    }

    /** SHA-256 over the output bits of every case with 1 and 3 threads, as hex. */
    static String digest(List<Case> cases) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        for (int threads : new int[] {1, 3}) {
            WorkerPool pool = new WorkerPool(threads);
            for (Case c : cases) {
                float[] y = dense(c, pool);
                ByteBuffer bb = ByteBuffer.allocate(4 * y.length);
                for (float v : y) {
                    bb.putInt(Float.floatToRawIntBits(v));
                }
                md.update(bb.array());
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /**
     * Prints the vector lanes, {@link #digest} of {@link #cases}(seed), and the labels of the cases
     * whose bits differ from this JVM's VectorOps (then its count).
     */
    public static void main(String[] args) throws Exception {
        List<Case> cases = cases(Long.parseLong(args[0]));
        System.out.println("lanes " + PanelLinear.L);
        System.out.println("digest " + digest(cases));
        VectorOps ops = new VectorOps(2);
        WorkerPool pool = new WorkerPool(2);
        int differ = 0;
        for (Case c : cases) {
            if (!sameBits(linearThenBias(ops, c), dense(c, pool))) {
                System.out.println("differs from VectorOps: " + c.label());
                differ++;
            }
        }
        System.out.println("differing from VectorOps " + differ);
    }
}
