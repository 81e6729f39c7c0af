package dev.shrink.gptq;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.QuantizedLinear;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/** Fixtures and a round-to-nearest quantizer for the GPTQ checkpoint tests. */
final class GptqTestSupport {
    private GptqTestSupport() {
    }

    static Path shared() {
        var root = SharedData.root();
        assumeTrue(root.isPresent(), "shared fixtures not found (set -Dshrink.shared or put ../shared beside the checkout)");
        return root.get();
    }

    static Path fixture() {
        Path p = shared().resolve("models/fixture-llama-14m");
        assumeTrue(Files.isDirectory(p), "missing fixture " + p);
        return p;
    }

    /**
     * Round-to-nearest as the reference quantizer (IST-DASLab gptq quant.py) computes it, in float32:
     * per (row, group) xmin = min(0, min w), xmax = max(0, max w); symmetric: xmax = max(|xmin|, xmax)
     * and xmin = −xmax when xmin &lt; 0; both 0 → [−1, 1]; scale = (xmax − xmin) / maxq; zero =
     * (maxq + 1) / 2 (sym) or round(−xmin / scale); q = clamp(round(w / scale) + zero, 0, maxq).
     *
     * @param order the column order in which groups are contiguous (act-order); null = 0..K−1
     */
    static QuantizedLinear rtn(String name, float[] w, int N, int K, int bits, int groupSize, boolean sym, int[] order) {
        int maxq = (1 << bits) - 1;
        int G = QuantizedLinear.groups(K, groupSize);
        int len = groupSize == -1 ? K : groupSize;
        if (order == null) {
            order = new int[K];
            for (int k = 0; k < K; k++) {
                order[k] = k;
            }
        }
        int[] gIdx = new int[K];
        for (int i = 0; i < K; i++) {
            gIdx[order[i]] = i / len;
        }
        float[] scales = new float[G * N];
        int[] zeros = new int[G * N];
        int[] codes = new int[N * K];
        for (int n = 0; n < N; n++) {
            for (int g = 0; g < G; g++) {
                int from = g * len, to = Math.min(K, from + len);
                float xmin = 0, xmax = 0;
                for (int i = from; i < to; i++) {
                    float x = w[n * K + order[i]];
                    xmin = Math.min(xmin, x);
                    xmax = Math.max(xmax, x);
                }
                if (sym) {
                    xmax = Math.max(Math.abs(xmin), xmax);
                    if (xmin < 0) {
                        xmin = -xmax;
                    }
                }
                if (xmin == 0 && xmax == 0) {
                    xmin = -1;
                    xmax = 1;
                }
                float scale = (xmax - xmin) / maxq;
                int zero = sym ? (maxq + 1) / 2 : (int) Math.rint(-xmin / scale);
                scales[g * N + n] = scale;
                zeros[g * N + n] = zero;
                for (int i = from; i < to; i++) {
                    int k = order[i];
                    int q = (int) Math.rint(w[n * K + k] / scale) + zero;
                    codes[n * K + k] = Math.max(0, Math.min(maxq, q));
                }
            }
        }
        return new QuantizedLinear(name, N, K, bits, groupSize, codes, scales, zeros, gIdx, null);
    }

    /** A random permutation of 0..K−1 (an act-order-like column order). */
    static int[] permutation(int K, Random rnd) {
        int[] p = new int[K];
        for (int i = 0; i < K; i++) {
            p[i] = i;
        }
        for (int i = K - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /** Every decoder linear of the model quantized by {@link #rtn}; act-order with a random order per layer when asked. */
    static Map<String, QuantizedLinear> quantizeAll(ModelDir m, int bits, int groupSize, boolean sym, boolean actOrder,
                                                    long seed) {
        Random rnd = new Random(seed);
        ArchitectureSpec spec = m.spec();
        Map<String, QuantizedLinear> out = new LinkedHashMap<>();
        for (int i = 0; i < m.config().layers(); i++) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                String x = spec.layer(i, l.name());
                long[] shape = m.weights().info(x + ".weight").shape();
                int N = (int) shape[0], K = (int) shape[1];
                float[] w = m.weights().floats(x + ".weight");
                out.put(x, rtn(x, w, N, K, bits, groupSize, sym, actOrder ? permutation(K, rnd) : null));
            }
        }
        return out;
    }

    /** The same layer with its scales rounded through fp16, as a GPTQ file stores them. */
    static QuantizedLinear withFp16Scales(QuantizedLinear q) {
        float[] s = q.scales().clone();
        for (int i = 0; i < s.length; i++) {
            s[i] = Float.float16ToFloat(Float.floatToFloat16(s[i]));
        }
        return new QuantizedLinear(q.name(), q.N(), q.K(), q.bits(), q.groupSize(), q.codes(), s, q.zeros(), q.gIdx(),
                q.bias());
    }
}
