package dev.shrink.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * exp built only from IEEE-exact lane operations (add, mul, fma, min, max, integer shifts), so the
 * interpreter, C1 and C2 all give the same bits, and each lane gives the same bits as the scalar
 * form (so a row's vector body and scalar tail agree, whatever the vector width). The Vector API's
 * own {@code lanewise(EXP)} and float {@code reduceLanes(ADD)} do not promise that (an intrinsic
 * and the Java fallback may differ in the last bit, and which one runs depends on JIT timing),
 * which would make results differ from run to run and between thread counts. Sums: {@link LaneSums}.
 */
final class VectorMath {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;

    private static final float LOG2E = 1.44269504088896341f;
    /** ln 2 = LN2_HI + LN2_LO; LN2_HI has 9 significant bits, so n · LN2_HI is exact (Cody–Waite). */
    private static final float LN2_HI = 0.693359375f;
    private static final float LN2_LO = -2.12194440e-4f;
    /** 1.5 · 2²³: adding and subtracting it rounds a float of magnitude below 2²² to an integer. */
    private static final float ROUND = 12582912f;
    /** exp(−104) and exp(89) already round to 0 and ∞ in float; clamping keeps n in [−150, 129]. */
    private static final float LO = -104f, HI = 89f;

    private VectorMath() {
    }

    /**
     * e^x per lane, within 2 ulp of the exact value (Cephes expf polynomial), with correct
     * underflow to subnormals and 0, overflow to ∞, and NaN kept.
     * x = n·ln 2 + r, |r| ≤ ln 2 / 2; e^r by a degree-7 polynomial; 2^n applied as 2^(n/2)·2^(n−n/2)
     * so both factors stay normal floats.
     */
    static FloatVector exp(FloatVector x) {
        FloatVector t = x.max(LO).min(HI); // NaN stays NaN
        FloatVector n = t.fma(LOG2E, ROUND).sub(ROUND); // round(t / ln 2)
        FloatVector r = n.fma(c(-LN2_HI), t);
        r = n.fma(c(-LN2_LO), r);
        FloatVector p = FloatVector.broadcast(S, 1.9875691500e-4f);
        p = p.fma(r, c(1.3981999507e-3f));
        p = p.fma(r, c(8.3334519073e-3f));
        p = p.fma(r, c(4.1665795894e-2f));
        p = p.fma(r, c(1.6666665459e-1f));
        p = p.fma(r, c(5.0000001201e-1f));
        p = p.fma(r.mul(r), r.add(1f)); // e^r ≈ 1 + r + r²·P(r)
        IntVector ni = (IntVector) n.convert(VectorOperators.F2I, 0);
        IntVector n1 = ni.lanewise(VectorOperators.ASHR, 1);
        IntVector n2 = ni.sub(n1);
        return p.mul(pow2(n1)).mul(pow2(n2));
    }

    private static FloatVector c(float value) {
        return FloatVector.broadcast(S, value);
    }

    /** 2^n for integer lanes n in [−126, 127], as floats built from their exponent bits. */
    private static FloatVector pow2(IntVector n) {
        return n.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
    }

    /** e^x for one float, by the same steps as {@link #exp(FloatVector)}: scalar tails match vector lanes. */
    static float exp(float x) {
        float t = Math.min(Math.max(x, LO), HI);
        float n = Math.fma(t, LOG2E, ROUND) - ROUND;
        float r = Math.fma(n, -LN2_HI, t);
        r = Math.fma(n, -LN2_LO, r);
        float p = 1.9875691500e-4f;
        p = Math.fma(p, r, 1.3981999507e-3f);
        p = Math.fma(p, r, 8.3334519073e-3f);
        p = Math.fma(p, r, 4.1665795894e-2f);
        p = Math.fma(p, r, 1.6666665459e-1f);
        p = Math.fma(p, r, 5.0000001201e-1f);
        p = Math.fma(p, r * r, r + 1f);
        int ni = (int) n;
        int n1 = ni >> 1, n2 = ni - n1;
        return p * Float.intBitsToFloat((n1 + 127) << 23) * Float.intBitsToFloat((n2 + 127) << 23);
    }
}
