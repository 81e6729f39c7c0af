package dev.shrink.kernels.cpu;

import dev.shrink.core.quant.QuantizedLinear;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;

/**
 * Random quantized linears for {@link PackedLinearTest}, and a main that prints the SHA-256 of
 * {@link PackedLinear}'s outputs on all of them, which the test runs in JVMs of other vector widths.
 */
public final class PackedLinearCases {
    private PackedLinearCases() {
    }

    /** One problem: a linear and an input of M rows. */
    record Case(String label, QuantizedLinear q, float[] x, int M) {
    }

    /**
     * A random linear: codes uniform; scales of both signs over two decades; zero points the
     * symmetric 2^(bits−1), or random in 0..2^bits (2^bits is what a v1 checkpoint's all-ones field
     * reads as); act-order: each group's columns scattered over K (a shuffled sequential g_idx).
     */
    static QuantizedLinear random(Random rnd, int N, int K, int bits, int groupSize, boolean actOrder,
                                  boolean sym, boolean bias) {
        int maxq = (1 << bits) - 1;
        int G = QuantizedLinear.groups(K, groupSize);
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(maxq + 1);
        }
        float[] scales = new float[G * N];
        int[] zeros = new int[G * N];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (rnd.nextBoolean() ? 1 : -1) * (0.001f + rnd.nextFloat() * 0.1f);
            zeros[i] = sym ? 1 << (bits - 1) : rnd.nextInt(maxq + 2);
        }
        int[] gIdx = QuantizedLinear.sequentialGIdx(K, groupSize);
        if (actOrder) {
            for (int i = K - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1), t = gIdx[i];
                gIdx[i] = gIdx[j];
                gIdx[j] = t;
            }
        }
        float[] b = bias ? Close.random(rnd, N, 1f) : null;
        return new QuantizedLinear("model.layers.0.mlp.test_proj", N, K, bits, groupSize, codes, scales, zeros, gIdx, b);
    }

    /** Inputs of mixed magnitudes (four decades), so that different summation orders round differently. */
    static float[] input(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (rnd.nextFloat() * 2 - 1) * (float) Math.pow(10, rnd.nextInt(4) - 2);
        }
        return x;
    }

    /**
     * Shapes around the vector widths (N and K not multiples of 4, 8, 16, 32; K over Sgemm's block
     * of 384, so that K is cut in blocks), bits 4 and 8, groups 32, 128 and −1, M = 1, 3 and 64 in
     * every combination, act-order, symmetric zeros and bias varying over them.
     */
    static List<Case> cases(long seed) {
        Random rnd = new Random(seed);
        int[][] shapes = {{37, 100}, {64, 128}, {50, 420}, {33, 1000}, {129, 264}};
        int[] groups = {32, 128, -1};
        int[] ms = {1, 3, 64};
        List<Case> out = new ArrayList<>();
        int i = 0;
        for (int bits : new int[] {4, 8}) {
            for (int[] s : shapes) {
                for (int group : groups) {
                    for (int M : ms) { // act-order, sym and bias vary across the 90 cases by i's bits
                        boolean act = group != -1 && i % 2 == 0;
                        boolean sym = (i >> 1) % 2 == 0;
                        boolean bias = (i >> 2) % 2 == 0;
                        QuantizedLinear q = random(rnd, s[0], s[1], bits, group, act, sym, bias);
                        String label = bits + "-bit N=" + s[0] + " K=" + s[1] + " group " + group
                                + (act ? " act-order" : "") + (sym ? " sym" : " asym") + (bias ? " bias" : "") + " M=" + M;
                        out.add(new Case(label, q, input(rnd, M * s[1]), M));
                        i++;
                    }
                }
            }
        }
        return out;
    }

    /** SHA-256 over the output bits of every case with 1 and 3 threads, as hex. */
    static String digest(List<Case> cases) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        for (int threads : new int[] {1, 3}) {
            WorkerPool pool = new WorkerPool(threads);
            for (Case c : cases) {
                float[] y = new float[c.M() * c.q().N()];
                PackedLinear.of(c.q()).apply(c.x(), c.M(), y, pool);
                ByteBuffer bb = ByteBuffer.allocate(4 * y.length);
                for (float v : y) {
                    bb.putInt(Float.floatToRawIntBits(v));
                }
                md.update(bb.array());
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** Prints the vector lanes and {@link #digest} of {@link #cases}(seed). */
    public static void main(String[] args) throws Exception {
        System.out.println("lanes " + PackedLinear.L);
        System.out.println("digest " + digest(cases(Long.parseLong(args[0]))));
    }
}
