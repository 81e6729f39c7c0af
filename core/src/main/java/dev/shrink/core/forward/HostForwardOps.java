package dev.shrink.core.forward;

import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;

/**
 * The {@link Forward}'s arrays on the Java heap: float[] activations and {@link BlockWeights},
 * the math through an {@link Ops} backend (cpu, cpu-reference). Arrays are left to the garbage
 * collector.
 */
public final class HostForwardOps implements ForwardOps<float[], BlockWeights> {
    private final Ops ops;
    private final ModelConfig cfg;
    private final java.util.Map<ModelConfig.RopeConfig, RopeTables> ropes = new java.util.HashMap<>();

    public HostForwardOps(ModelConfig cfg, Ops ops) {
        this.ops = ops;
        this.cfg = cfg;
        ropes.put(cfg.rope(), new RopeTables(cfg));
    }

    public Ops ops() {
        return ops;
    }

    @Override
    public String name() {
        return ops.name();
    }

    @Override
    public float[] alloc(long n) {
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(n + " floats exceed a Java array: use fewer tokens at once");
        }
        return new float[(int) n];
    }

    @Override
    public void copy(float[] src, long srcOff, int srcLd, float[] dst, long dstOff, int dstLd, int rows, int width) {
        for (int i = 0; i < rows; i++) {
            System.arraycopy(src, (int) srcOff + i * srcLd, dst, (int) dstOff + i * dstLd, width);
        }
    }

    @Override
    public void add(float[] x, float[] d, long n) {
        for (int i = 0; i < n; i++) {
            x[i] += d[i];
        }
    }

    @Override
    public void rmsNorm(float[] x, float[] weight, float eps, int M, int C, float[] y) {
        ops.rmsNorm(x, weight, eps, M, C, y);
    }

    @Override
    public void linear(BlockWeights w, String name, float[] x, int M, int K, int N, float[] y) {
        dev.shrink.core.ops.LinearKernel k = w.packed(name);
        if (k != null) { // a quantized linear multiplied packed, bias included
            k.apply(x, M, y);
            return;
        }
        ops.linear(x, M, K, w.weight(name), N, y);
        float[] bias = w.bias(name);
        if (bias != null) {
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < N; n++) {
                    y[m * N + n] += bias[n];
                }
            }
        }
    }

    @Override
    public void scale(float[] x, float s, long n) {
        for (int i = 0; i < n; i++) {
            x[i] *= s;
        }
    }

    @Override
    public void softcap(float[] x, float cap, long n) {
        for (int i = 0; i < n; i++) {
            x[i] = (float) Math.tanh(x[i] / cap) * cap;
        }
    }

    @Override
    public void rope(float[] x, int B, int T, int heads, int D, int start, int layer) {
        RopeTables rope;
        synchronized (ropes) {
            rope = ropes.computeIfAbsent(cfg.rope(layer, start + T), r -> new RopeTables(cfg, r));
        }
        rope.ensure(start + T);
        int[] positions = new int[B * T];
        for (int i = 0; i < positions.length; i++) {
            positions[i] = start + i % T;
        }
        ops.rope(x, B * T, heads, D, positions, rope.cos(), rope.sin());
    }

    @Override
    public void kvRoundTrip(float[] x, int rows, int heads, int D, KvCacheType type) {
        type.roundTrip(x, rows, heads, D);
    }

    @Override
    public void attention(float[] q, float[] k, float[] v, int B, int T, int H, int Hkv, int D, int window, double scale,
                          float softcap, float[] out) {
        if (B == 1) {
            ops.attention(q, k, v, T, T, H, Hkv, D, window, scale, softcap, out);
            return;
        }
        int qn = T * H * D, kvn = T * Hkv * D;
        float[] qb = new float[qn], kb = new float[kvn], vb = new float[kvn], ob = new float[qn];
        for (int b = 0; b < B; b++) {
            System.arraycopy(q, b * qn, qb, 0, qn);
            System.arraycopy(k, b * kvn, kb, 0, kvn);
            System.arraycopy(v, b * kvn, vb, 0, kvn);
            ops.attention(qb, kb, vb, T, T, H, Hkv, D, window, scale, softcap, ob);
            System.arraycopy(ob, 0, out, b * qn, qn);
        }
    }

    @Override
    public void attendCached(KvCache cache, int layer, float[] q, float[] k, float[] v, int T, int H, int Hkv, int D,
                             int window, double scale, float softcap, float[] out) {
        int start = cache.length();
        cache.append(layer, k, 0, v, 0, T);
        ops.attention(q, cache.keys(layer), cache.values(layer), T, start + T, H, Hkv, D, window, scale, softcap, out);
    }

    @Override
    public void swiglu(float[] gate, float[] up, long n, float[] out) {
        ops.swiglu(gate, up, (int) n, out);
    }

    @Override
    public void geglu(float[] gate, float[] up, long n, float[] out) {
        ops.geglu(gate, up, (int) n, out);
    }

    @Override
    public void zero(float[] x, long n) {
        java.util.Arrays.fill(x, 0, (int) n, 0f);
    }

    @Override
    public float[] toHost(float[] x, long n) {
        return java.util.Arrays.copyOf(x, (int) n);
    }

    @Override
    public void gatherRows(float[] src, int[] rows, int C, float[] dst) {
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(src, rows[i] * C, dst, i * C, C);
        }
    }

    @Override
    public void addScaledRows(float[] y, int[] rows, float[] weights, int C, float[] out) {
        for (int i = 0; i < rows.length; i++) {
            int o = rows[i] * C, s = i * C;
            float w = weights[i];
            for (int c = 0; c < C; c++) {
                out[o + c] += w * y[s + c]; // Java rounds the product, then the sum (no fused multiply-add)
            }
        }
    }

    @Override
    public Float firstNonFinite(float[] x, long n) {
        int i = NonFinite.first(x, (int) n);
        return i < 0 ? null : x[i];
    }

    @Override
    public int layer(BlockWeights w) {
        return w.layer();
    }

    @Override
    public float[] inputNorm(BlockWeights w) {
        return w.inputNorm();
    }

    @Override
    public float[] postAttentionNorm(BlockWeights w) {
        return w.postAttentionNorm();
    }

    @Override
    public float[] qNorm(BlockWeights w) {
        return w.qNorm();
    }

    @Override
    public float[] kNorm(BlockWeights w) {
        return w.kNorm();
    }

    @Override
    public float[] attentionOutputNorm(BlockWeights w) {
        return w.attentionOutputNorm();
    }

    @Override
    public float[] mlpOutputNorm(BlockWeights w) {
        return w.mlpOutputNorm();
    }
}
