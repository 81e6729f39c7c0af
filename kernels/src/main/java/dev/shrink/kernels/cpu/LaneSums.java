package dev.shrink.kernels.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The one summation order of the CPU kernels' row sums (RMSNorm's Σx², softmax's and log-sum-exp's
 * Σ exp, distillation's dot products), fixed so that the bits do not depend on the CPU's vector
 * width (4, 8 or 16 floats: SSE/NEON, AVX2, AVX-512; {@code -XX:MaxVectorSize}) nor on the thread
 * count:
 *
 * <ol>
 *   <li>{@value #W} partial sums; partial i takes the elements whose index in the row is i mod
 *       {@value #W}, in index order, each partial starting from +0;</li>
 *   <li>the partials are added in one fixed pairwise tree, in double:
 *       q[i] = p[i] + p[i + 8], then q[i] + q[i + 4], then + [i + 2], then q[0] + q[1].</li>
 * </ol>
 *
 * A vector loop implements step 1 with {@link #K} = {@value #W} / L accumulators of L lanes over
 * whole blocks of {@value #W} elements (accumulator k, lane j holds partial k·L + j), then
 * {@link #partials} spills them in that order and a scalar loop adds the remaining elements to
 * partial {@code index & (W - 1)} with the same float operation (add, or
 * {@link Math#fma}, which rounds once as the vector fma does). Where the vector width is outside
 * 4..{@value #W} floats, {@link #bound} is 0 and the scalar loop does every element: the same bits
 * again. Maxima need no such care: max is exact, so any order gives the same value (Java's max
 * also orders −0 below +0 and propagates NaN in every order).
 */
public final class LaneSums {
    /** Partial sums per row: the widest x86 vector (512 bits) of floats. */
    public static final int W = 16;
    /** The CPU's preferred float species, which the vector loops use. */
    public static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /** Floats per vector. */
    public static final int L = S.length();
    /** Accumulators per block of {@value #W} elements; 0 when L is not in 4..{@value #W} (scalar loops only). */
    public static final int K = L >= 4 && L <= W ? W / L : 0;
    /** Doubles of the same vector size, half as many lanes: the two halves of a float vector. */
    public static final VectorSpecies<Double> SD = VectorSpecies.of(double.class, S.vectorShape());

    private LaneSums() {
    }

    /** End of the vector loop over a row of n elements: whole blocks of {@value #W}, or 0 without a usable vector width. */
    public static int bound(int n) {
        return K == 0 ? 0 : n & -W;
    }

    /** The {@value #W} partials held by accumulators a0..a3 (those past {@link #K} unused), in partial order. */
    public static float[] partials(FloatVector a0, FloatVector a1, FloatVector a2, FloatVector a3) {
        float[] p = new float[W];
        if (K > 0) {
            a0.intoArray(p, 0);
        }
        if (K > 1) {
            a1.intoArray(p, L);
        }
        if (K > 2) {
            a2.intoArray(p, 2 * L);
            a3.intoArray(p, 3 * L);
        }
        return p;
    }

    /**
     * The {@value #W} double partials held by the low and high halves (see {@link #widen}) of
     * accumulators 0..3 (those past {@link #K} unused), in partial order.
     */
    public static double[] partials(DoubleVector lo0, DoubleVector hi0, DoubleVector lo1, DoubleVector hi1,
                                    DoubleVector lo2, DoubleVector hi2, DoubleVector lo3, DoubleVector hi3) {
        double[] p = new double[W];
        int h = L / 2;
        if (K > 0) {
            lo0.intoArray(p, 0);
            hi0.intoArray(p, h);
        }
        if (K > 1) {
            lo1.intoArray(p, L);
            hi1.intoArray(p, L + h);
        }
        if (K > 2) {
            lo2.intoArray(p, 2 * L);
            hi2.intoArray(p, 2 * L + h);
            lo3.intoArray(p, 3 * L);
            hi3.intoArray(p, 3 * L + h);
        }
        return p;
    }

    /** Σ of the {@value #W} partials in the fixed pairwise tree, in double. */
    public static double sum(float[] p) {
        double[] d = new double[W];
        for (int i = 0; i < W; i++) {
            d[i] = p[i];
        }
        return sum(d);
    }

    /** Σ of the {@value #W} partials in the fixed pairwise tree; p is overwritten. */
    public static double sum(double[] p) {
        for (int half = W / 2; half > 0; half /= 2) {
            for (int i = 0; i < half; i++) {
                p[i] += p[i + half];
            }
        }
        return p[0];
    }

    /** Σ x[o + c]² for c &lt; n, each square fused into its partial (float fma). */
    public static double sumSquares(float[] x, int o, int n) {
        FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
        int bound = bound(n);
        for (int c = o, end = o + bound; c < end; c += W) {
            a0 = square(x, c, a0);
            if (K > 1) {
                a1 = square(x, c + L, a1);
            }
            if (K > 2) {
                a2 = square(x, c + 2 * L, a2);
                a3 = square(x, c + 3 * L, a3);
            }
        }
        float[] p = partials(a0, a1, a2, a3);
        for (int c = bound; c < n; c++) {
            float v = x[o + c];
            p[c & (W - 1)] = Math.fma(v, v, p[c & (W - 1)]);
        }
        return sum(p);
    }

    private static FloatVector square(float[] x, int i, FloatVector acc) {
        FloatVector v = FloatVector.fromArray(S, x, i);
        return v.fma(v, acc);
    }

    /** The lanes of a float vector widened to doubles: part 0 the low half, part 1 the high half. */
    public static DoubleVector widen(FloatVector v, int part) {
        return (DoubleVector) v.convertShape(VectorOperators.F2D, SD, part);
    }
}
