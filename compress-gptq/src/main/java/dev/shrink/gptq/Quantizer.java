package dev.shrink.gptq;

/**
 * The reference quantizer of GPTQ (IST-DASLab quant.py), per output row over a range of columns,
 * in float32 arithmetic as the reference computes it:
 * <pre>
 *   xmin = min(min(w), 0), xmax = max(max(w), 0)
 *   sym:  xmax = max(|xmin|, xmax); xmin = −xmax where xmin &lt; 0
 *   xmin = −1, xmax = +1 where both are 0
 *   scale = (xmax − xmin) / maxq
 *   zero  = sym ? (maxq + 1) / 2 : round(−xmin / scale)
 *   q(w)  = scale · (clamp(round(w / scale) + zero, 0, maxq) − zero)
 * </pre>
 * round is half-to-even, as torch.round. W: [N, K] row-major.
 */
public final class Quantizer {
    private Quantizer() {
    }

    /** Per-row parameters of one group: scale[n], zero[n] (an integer held in a float). */
    public record Params(float[] scale, float[] zero) {
    }

    /** Parameters for columns [c0, c0 + cols) of every row of W: [N, K]. */
    public static Params find(float[] W, int N, int K, int c0, int cols, QuantScheme s) {
        float[] scale = new float[N];
        float[] zero = new float[N];
        int maxq = s.maxq();
        for (int n = 0; n < N; n++) {
            int row = n * K + c0;
            float xmin = 0f, xmax = 0f;
            for (int c = 0; c < cols; c++) {
                float w = W[row + c];
                xmin = Math.min(xmin, w);
                xmax = Math.max(xmax, w);
            }
            if (s.sym()) {
                xmax = Math.max(Math.abs(xmin), xmax);
                if (xmin < 0) {
                    xmin = -xmax;
                }
            }
            if (xmin == 0 && xmax == 0) {
                xmin = -1;
                xmax = 1;
            }
            float sc = (xmax - xmin) / maxq;
            float z = s.sym() ? (maxq + 1) / 2f : (float) Math.rint(-xmin / sc);
            if (s.mse()) {
                float bestErr = Float.POSITIVE_INFINITY;
                float bestScale = sc, bestZero = z;
                for (int i = 0; i < (int) (s.maxShrink() * s.grid()); i++) {
                    float p = 1f - (float) i / s.grid();
                    float xmin1 = p * xmin, xmax1 = p * xmax;
                    float sc1 = (xmax1 - xmin1) / maxq;
                    float z1 = s.sym() ? z : (float) Math.rint(-xmin1 / sc1);
                    float err = 0f;
                    for (int c = 0; c < cols; c++) {
                        float w = W[row + c];
                        float d = Math.abs(quantize(w, sc1, z1, maxq) - w);
                        err += (float) Math.pow(d, s.norm());
                    }
                    if (err < bestErr) {
                        bestErr = err;
                        bestScale = sc1;
                        bestZero = z1;
                    }
                }
                sc = bestScale;
                z = bestZero;
            }
            scale[n] = sc;
            zero[n] = z;
        }
        return new Params(scale, zero);
    }

    /** The integer code of w: clamp(round(w / scale) + zero, 0, maxq). */
    public static int code(float w, float scale, float zero, int maxq) {
        float q = (float) Math.rint(w / scale) + zero;
        return (int) Math.max(0f, Math.min(maxq, q));
    }

    /** w quantized and dequantized: scale · (code − zero). */
    public static float quantize(float w, float scale, float zero, int maxq) {
        return scale * (code(w, scale, zero, maxq) - zero);
    }
}
