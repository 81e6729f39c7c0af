package dev.shrink.distill;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * e^x in float32 for the training ops' softmaxes and sigmoids, per vector lane and per scalar with
 * the same steps (so a row's vector body and scalar tail agree), within a few ulp of the exact
 * value. Range reduction x = n·ln 2 + r with ln 2 split in two (Cody and Waite), |r| ≤ ln 2 / 2,
 * e^r by its Taylor polynomial to degree 7 (truncation below 2e-8 relative), then 2^n from exponent
 * bits, split as 2^(n/2)·2^(n − n/2) so both factors stay normal. Inputs are clamped to
 * [−103, 88.5] (e^−103 is subnormal, e^88.5 just below the float maximum); NaN stays NaN.
 *
 * <p>Only lane operations that IEEE 754 defines exactly are used (add, mul, fma, min, max, integer
 * shifts and adds), never the Vector API's own {@code lanewise(EXP)}, whose intrinsic and Java
 * fallback may round differently: results are the same in the interpreter and in compiled code,
 * which a resumed training run relies on to reproduce an uninterrupted one.
 */
final class FastExp {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();

    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693359375f;     // 9 significant bits: n · LN2_HI is exact
    private static final float LN2_LO = -2.12194440e-4f;  // ln 2 − LN2_HI
    private static final float ROUND = 12582912f;         // 1.5 · 2^23: x + ROUND − ROUND rounds x to an integer
    private static final float LO = -103f, HI = 88.5f;
    // 1/k! for k = 7 .. 2
    private static final float C7 = 1.98412698e-4f, C6 = 1.38888889e-3f, C5 = 8.33333333e-3f, C4 = 4.16666667e-2f,
            C3 = 1.66666667e-1f, C2 = 0.5f;

    private FastExp() {
    }

    /** e^x per lane. */
    static FloatVector exp(FloatVector x) {
        FloatVector t = x.max(LO).min(HI);
        FloatVector n = t.fma(LOG2E, ROUND).sub(ROUND);
        FloatVector r = n.fma(FloatVector.broadcast(S, -LN2_HI), t);
        r = n.fma(FloatVector.broadcast(S, -LN2_LO), r);
        FloatVector p = r.fma(C7, C6);
        p = p.fma(r, FloatVector.broadcast(S, C5));
        p = p.fma(r, FloatVector.broadcast(S, C4));
        p = p.fma(r, FloatVector.broadcast(S, C3));
        p = p.fma(r, FloatVector.broadcast(S, C2));
        p = p.fma(r.mul(r), r.add(1f)); // 1 + r + r²·(1/2 + r/6 + ...)
        IntVector ni = (IntVector) n.convert(VectorOperators.F2I, 0);
        IntVector n1 = ni.lanewise(VectorOperators.ASHR, 1);
        IntVector n2 = ni.sub(n1);
        return p.mul(pow2(n1)).mul(pow2(n2));
    }

    private static FloatVector pow2(IntVector n) {
        return n.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
    }

    /** e^x, by the same steps as the vector version. */
    static float exp(float x) {
        if (Float.isNaN(x)) {
            return x;
        }
        float t = Math.min(Math.max(x, LO), HI);
        float n = Math.fma(t, LOG2E, ROUND) - ROUND;
        float r = Math.fma(n, -LN2_HI, t);
        r = Math.fma(n, -LN2_LO, r);
        float p = Math.fma(r, C7, C6);
        p = Math.fma(p, r, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        p = Math.fma(p, r * r, r + 1f);
        int ni = (int) n;
        int n1 = ni >> 1, n2 = ni - n1;
        return p * Float.intBitsToFloat((n1 + 127) << 23) * Float.intBitsToFloat((n2 + 127) << 23);
    }
}
