package dev.shrink.core.forward;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * The int8 / int4 KV cache quantizer (docs/KV_CACHE.md) against an independent reference of
 * LMDeploy's asymmetric per-token, per-head scheme written with exact decimal arithmetic, and its
 * error bounds.
 */
class KvCacheTypeTest {

    /** fp16 rounding done by hand: the nearest multiple of the fp16 spacing at v's binade, ties to even. */
    private static double toFp16(double v) {
        if (v == 0) {
            return 0;
        }
        int e = Math.max(Math.getExponent(v), -14); // subnormals share the spacing of 2^-14's binade
        BigDecimal ulp = new BigDecimal(Math.scalb(1.0, e - 10));
        return new BigDecimal(v).divide(ulp).setScale(0, RoundingMode.HALF_EVEN).multiply(ulp).doubleValue();
    }

    /** The reference: min/max, fp16 scale and zero, codes = rint((x − zero) · fl(1/scale)) saturated. */
    private static int[] referenceCodes(float[] x, int off, int D, int bits, double[] params) {
        double lo = Double.MAX_VALUE, hi = -Double.MAX_VALUE;
        for (int i = 0; i < D; i++) {
            lo = Math.min(lo, x[off + i]);
            hi = Math.max(hi, x[off + i]);
        }
        int qmax = (1 << bits) - 1;
        float spread = (float) ((float) hi - (float) lo); // the range as float32 computes it
        double scale = toFp16((float) (spread * (float) (1.0 / qmax)));
        double zero = toFp16(lo);
        float inv = (float) (1.0 / (float) scale);
        int[] q = new int[D];
        for (int i = 0; i < D; i++) {
            float t = (float) ((float) (x[off + i] - (float) zero) * inv);
            BigDecimal r = new BigDecimal(t).setScale(0, RoundingMode.HALF_EVEN);
            q[i] = (int) Math.max(0, Math.min(qmax, r.doubleValue()));
        }
        params[0] = scale;
        params[1] = zero;
        return q;
    }

    @ParameterizedTest(name = "{0} bits, head dim {1}, magnitude {2}")
    @CsvSource({"8, 64, 1", "8, 128, 30", "4, 64, 1", "4, 128, 30", "8, 8, 0.001", "4, 16, 200"})
    void codesMatchTheReferenceAndErrorsStayWithinHalfAStep(int bits, int D, double magnitude) {
        Random rnd = new Random(bits * 1000 + D);
        int tokens = 5, heads = 3;
        float[] x = new float[tokens * heads * D];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) ((rnd.nextGaussian() + (i % D == 7 ? 4 : 0)) * magnitude); // an outlier channel, as K has
        }
        float[] y = x.clone();
        (bits == 8 ? KvCacheType.INT8 : KvCacheType.INT4).roundTrip(y, tokens, heads, D);
        int qmax = (1 << bits) - 1;
        int[] codes = new int[D];
        float[] params = new float[2];
        double[] ref = new double[2];
        for (int g = 0; g < tokens * heads; g++) {
            int off = g * D;
            KvCacheType.quantize(x, off, D, bits, codes, params);
            int[] expected = referenceCodes(x, off, D, bits, ref);
            assertArrayEquals(expected, codes, "codes of group " + g);
            assertEquals(ref[0], params[0], 0.0, "fp16 scale of group " + g);
            assertEquals(ref[1], params[1], 0.0, "fp16 zero of group " + g);
            double lo = Double.MAX_VALUE, hi = -Double.MAX_VALUE;
            for (int i = 0; i < D; i++) {
                lo = Math.min(lo, x[off + i]);
                hi = Math.max(hi, x[off + i]);
            }
            double step = (hi - lo) / qmax;
            // half a step of rounding, plus what fp16 scale/zero rounding (relative 2^-11) can add at the ends
            double bound = 0.5 * params[0] + Math.scalb(1.0, -11) * (qmax * step + Math.abs(lo)) + 1e-6 * (hi - lo);
            boolean sawMin = false, sawMax = false;
            for (int i = 0; i < D; i++) {
                assertTrue(codes[i] >= 0 && codes[i] <= qmax);
                double err = Math.abs(y[off + i] - x[off + i]);
                assertTrue(err <= bound, "group " + g + " element " + i + ": error " + err + " > " + bound);
                assertEquals(codes[i] * params[0] + params[1], y[off + i], 1e-6 * (Math.abs(hi) + Math.abs(lo)),
                        "dequantized value");
                sawMin |= codes[i] == 0;
                sawMax |= codes[i] >= qmax - 1;
            }
            assertTrue(sawMin && sawMax, "the group's range spans the codes (asymmetric)");
        }
    }

    @Test
    void groupsArePerTokenAndHead() {
        int D = 4;
        // two heads of one token: a tiny head beside a large one keeps its own precision
        float[] x = {0.001f, 0.002f, 0.003f, 0.004f, 100f, -100f, 50f, 0f};
        float[] y = x.clone();
        KvCacheType.INT8.roundTrip(y, 1, 2, D);
        for (int i = 0; i < D; i++) {
            assertEquals(x[i], y[i], 0.003 / 255 + 1e-5, "small head element " + i);
        }
        assertEquals(100f, y[4], 200.0 / 255);
    }

    @Test
    void constantGroupsAndFp16AreExactOrUnchanged() {
        float[] x = {1.5f, 1.5f, 1.5f, 1.5f};
        float[] y = x.clone();
        KvCacheType.INT4.roundTrip(y, 1, 1, 4); // scale 0: every code 0, back to the zero point
        assertArrayEquals(x, y);
        float[] z = {0.1234567f, -3f, 7f, 1e-7f};
        float[] w = z.clone();
        KvCacheType.FP16.roundTrip(w, 1, 1, 4);
        assertArrayEquals(z, w);
    }

    @Test
    void namesAndLmdeployQuantPolicies() {
        assertEquals(KvCacheType.INT8, KvCacheType.parse("INT8", "--kv-cache"));
        assertEquals(KvCacheType.INT4, KvCacheType.fromQuantPolicy(4, "--quant-policy"));
        assertEquals(KvCacheType.INT8, KvCacheType.fromQuantPolicy(8, "--quant-policy"));
        assertEquals(KvCacheType.FP16, KvCacheType.fromQuantPolicy(0, "--quant-policy"));
        ShrinkException e = assertThrows(ShrinkException.class, () -> KvCacheType.fromQuantPolicy(2, "--quant-policy"));
        assertTrue(e.getMessage().startsWith("--quant-policy: 2"), e.getMessage());
        assertThrows(ShrinkException.class, () -> KvCacheType.parse("fp8", "--kv-cache"));
        // a token of a 128-dim head: 128 codes + fp16 scale + fp16 zero
        assertEquals(132, KvCacheType.INT8.bytesPerHead(128));
        assertEquals(68, KvCacheType.INT4.bytesPerHead(128));
        assertEquals(256, KvCacheType.FP16.bytesPerHead(128));
    }
}
