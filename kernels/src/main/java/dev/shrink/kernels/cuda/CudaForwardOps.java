package dev.shrink.kernels.cuda;

import dev.shrink.core.forward.ForwardOps;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.forward.RopeTables;
import dev.shrink.core.model.ModelConfig;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * The {@link dev.shrink.core.forward.Forward}'s arrays on the GPU: float32 {@link DeviceBuffer}s
 * and {@link DeviceBlock} weights, every op queued on the device's stream through {@link DeviceOps}.
 * Linears multiply by their weight's kind: float32 weights in {@link DeviceOps#math()} (fp32 or
 * TF32), fp16 weights with the activations rounded to fp16 (cuBLAS GemmEx, float32 sums), packed
 * GPTQ codes dequantized on the device into a reused fp16 buffer first.
 *
 * <p>Arrays from {@link #alloc} come from a pool keyed by size and go back to it on
 * {@link #release}, so a forward's steady state allocates nothing; {@link #close} frees the pool.
 * Host KV caches are not supported ({@link #attendCached} throws): decoding on the GPU is
 * {@link DeviceDecoder}'s.
 */
public final class CudaForwardOps implements ForwardOps<DeviceBuffer, DeviceBlock>, AutoCloseable {
    private final DeviceOps d;
    private final CudaDevice dev;
    private final CublasHandle blas;
    private final ModelConfig cfg;
    private final Map<ModelConfig.RopeConfig, Rope> ropes = new HashMap<>();
    private final Map<Long, ArrayDeque<DeviceBuffer>> pool = new HashMap<>();
    private DeviceBuffer scores, half, weightScratch;

    /** One RoPE's host tables and their copy on the device (uploaded again when they grow). */
    private static final class Rope {
        final RopeTables tables;
        DeviceBuffer cos, sin;
        int onDevice;

        Rope(RopeTables tables) {
            this.tables = tables;
        }
    }

    public CudaForwardOps(ModelConfig cfg, DeviceOps d) {
        this.d = d;
        this.dev = d.device();
        this.cfg = cfg;
        this.blas = dev.openCublas();
    }

    public DeviceOps deviceOps() {
        return d;
    }

    public CudaDevice device() {
        return dev;
    }

    @Override
    public String name() {
        return "cuda (" + d.math().label() + ")";
    }

    @Override
    public DeviceBuffer alloc(long n) {
        ArrayDeque<DeviceBuffer> free = pool.get(n);
        DeviceBuffer b = free == null ? null : free.poll();
        return b != null ? b : dev.alloc(Math.max(4, n * 4));
    }

    @Override
    public void release(DeviceBuffer a) {
        pool.computeIfAbsent(Math.max(1, a.bytes() / 4), k -> new ArrayDeque<>()).push(a);
    }

    @Override
    public void copy(DeviceBuffer src, long srcOff, int srcLd, DeviceBuffer dst, long dstOff, int dstLd, int rows,
                     int width) {
        d.copyRows(src.floatAt(srcOff), srcLd, 0, dst.floatAt(dstOff), dstLd, 0, rows, width);
    }

    @Override
    public void add(DeviceBuffer x, DeviceBuffer dd, long n) {
        d.add(x.address(), dd.address(), n);
    }

    @Override
    public void rmsNorm(DeviceBuffer x, DeviceBuffer weight, float eps, int M, int C, DeviceBuffer y) {
        d.rmsNorm(x.address(), weight.address(), eps, M, C, y.address());
    }

    @Override
    public void linear(DeviceBlock w, String name, DeviceBuffer x, int M, int K, int N, DeviceBuffer y) {
        DeviceBlock.Linear l = w.linear(name);
        if (l.N() != N || l.K() != K) {
            throw new IllegalArgumentException("linear " + name + " of block " + w.layer() + " is [" + l.N() + ", "
                    + l.K() + "], asked for [" + N + ", " + K + "]");
        }
        project(l, x.address(), M, y.address());
    }

    /**
     * y[M, N] = x[M, K] · Wᵀ (+ b) for linear {@code l} on device addresses (x float32 [M, K], y float32
     * [M, N]): float32 weights in {@link DeviceOps#math()}, fp16 and packed ones with x rounded to fp16.
     */
    public void project(DeviceBlock.Linear l, long x, int M, long y) {
        int N = l.N(), K = l.K();
        switch (l.kind()) {
            case F32 -> d.linear(x, M, K, l.weight().address(), N, y, 0f);
            case F16 -> linearF16(x, M, K, l.weight().address(), N, y);
            case PACKED -> {
                long wh = scratchWeight((long) N * K);
                d.dequantW4(l.weight().address(), l.qzeros().address(), l.scales().address(),
                        l.gIdx() == null ? 0 : l.gIdx().address(), K, N, l.groupSize(), l.bits(), l.v1Zeros(), wh);
                linearF16(x, M, K, wh, N, y);
            }
        }
        if (l.bias() != null) {
            d.addBias(y, l.bias().address(), M, N);
        }
    }

    /** y[M, N] = fp16(x)[M, K] · Whᵀ with W fp16 [N, K], float32 sums. */
    private void linearF16(long x, int M, int K, long wh, int N, long y) {
        long n = (long) M * K;
        DeviceBuffer xh = halfScratch(n * 2);
        d.toHalf(x, xh.address(), n);
        blas.gemmRowMajorF16(false, true, M, N, K, 1f, xh.address(), K, wh, K, 0f, y, N);
    }

    /** The fp16 scratch of at least {@code bytes}, shared by the fp16 linears and attention (stream-ordered). */
    private DeviceBuffer halfScratch(long bytes) {
        if (half == null || half.bytes() < bytes) {
            if (half != null) {
                half.close();
            }
            half = dev.alloc(bytes);
        }
        return half;
    }

    /** The reused fp16 buffer packed linears are dequantized into, of at least n halves. */
    private long scratchWeight(long n) {
        if (weightScratch == null || weightScratch.bytes() < n * 2) {
            if (weightScratch != null) {
                weightScratch.close();
            }
            weightScratch = dev.alloc(n * 2);
        }
        return weightScratch.address();
    }

    @Override
    public void scale(DeviceBuffer x, float s, long n) {
        d.scale(x.address(), s, n);
    }

    @Override
    public void softcap(DeviceBuffer x, float cap, long n) {
        d.softcap(x.address(), cap, n);
    }

    @Override
    public void rope(DeviceBuffer x, int B, int T, int heads, int D, int start, int layer) {
        if (start != 0 && B != 1) {
            throw new IllegalArgumentException("device RoPE from position " + start + " needs one sequence");
        }
        Rope r = ropes.computeIfAbsent(cfg.rope(layer, start + T), p -> new Rope(new RopeTables(cfg, p)));
        RopeTables rope = r.tables;
        rope.ensure(start + T);
        int half = D / 2;
        if (r.onDevice < rope.positions()) {
            if (r.cos != null) {
                r.cos.close();
                r.sin.close();
            }
            r.cos = dev.alloc((long) rope.positions() * half * 4);
            r.sin = dev.alloc((long) rope.positions() * half * 4);
            d.upload(rope.cos(), r.cos);
            d.upload(rope.sin(), r.sin);
            r.onDevice = rope.positions();
        }
        long off = (long) start * half;
        d.ropeSequences(x.address(), (long) B * T, heads, D, T, r.cos.floatAt(off), r.sin.floatAt(off));
    }

    @Override
    public void kvRoundTrip(DeviceBuffer x, int rows, int heads, int D, KvCacheType type) {
        d.kvRoundTrip(x.address(), rows, heads, D, type);
    }

    @Override
    public void attention(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, int B, int T, int H, int Hkv, int D,
                          int window, double scale, float softcap, DeviceBuffer out) {
        if (d.math() == GemmMath.FP16 && d.flashSupports(D)) { // fused, scores never stored (docs/FORWARD.md)
            DeviceBuffer h = halfScratch(DeviceOps.flashScratchBytes((long) B * T, H, Hkv, D));
            d.flashAttention(q.address(), k.address(), v.address(), B, T, H, Hkv, D, window, scale, softcap,
                    out.address(), h);
            return;
        }
        long need = DeviceOps.attentionScratch(T, H) * 4;
        if (scores == null || scores.bytes() < need) {
            if (scores != null) {
                scores.close();
            }
            scores = dev.alloc(need);
        }
        d.attention(q.address(), k.address(), v.address(), B, T, H, Hkv, D, window, scale, softcap, out.address(), scores);
    }

    @Override
    public void attendCached(KvCache cache, int layer, DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, int T, int H,
                             int Hkv, int D, int window, double scale, float softcap, DeviceBuffer out) {
        throw new UnsupportedOperationException("host KV caches on the cuda forward (GPU decoding is DeviceDecoder's)");
    }

    @Override
    public void swiglu(DeviceBuffer gate, DeviceBuffer up, long n, DeviceBuffer out) {
        d.swiglu(gate.address(), up.address(), n, out.address());
    }

    @Override
    public void geglu(DeviceBuffer gate, DeviceBuffer up, long n, DeviceBuffer out) {
        d.geglu(gate.address(), up.address(), n, out.address());
    }

    /** n rounded up to a quarter of its power of two (at most 25% more): the pool keeps about 4 sizes an octave. */
    @Override
    public int rowCapacity(int n) {
        return roundedRows(n);
    }

    static int roundedRows(int n) {
        if (n <= 8) {
            return 8;
        }
        int step = Integer.highestOneBit(n) >> 2;
        return (int) Math.min(Integer.MAX_VALUE, ((long) n + step - 1) / step * step);
    }

    @Override
    public void zero(DeviceBuffer x, long n) {
        dev.fill32(x.address(), 0, n);
    }

    @Override
    public float[] toHost(DeviceBuffer x, long n) {
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(n + " floats exceed a Java array");
        }
        return d.downloadFloats(x, 0, (int) n);
    }

    @Override
    public void gatherRows(DeviceBuffer src, int[] rows, int C, DeviceBuffer dst) {
        DeviceBuffer r = indices(rows);
        d.gatherRows(src.address(), r.address(), rows.length, C, dst.address());
        release(r);
    }

    @Override
    public void addScaledRows(DeviceBuffer y, int[] rows, float[] weights, int C, DeviceBuffer out) {
        if (weights.length != rows.length) {
            throw new IllegalArgumentException(rows.length + " rows with " + weights.length + " weights");
        }
        DeviceBuffer r = indices(rows), w = alloc(rowCapacity(weights.length));
        d.upload(weights, w);
        d.addScaledRows(y.address(), r.address(), w.address(), rows.length, C, out.address());
        release(r);
        release(w); // reused only by later work on the stream: the upload into it is ordered after this kernel
    }

    /** rows as a device int32 array (pooled like the float arrays: both are 4 bytes an element). */
    private DeviceBuffer indices(int[] rows) {
        DeviceBuffer r = alloc(rowCapacity(rows.length));
        d.upload(rows, r, 0);
        return r;
    }

    @Override
    public Float firstNonFinite(DeviceBuffer x, long n) {
        return d.anyNonFinite(x.address(), n) ? Float.NaN : null;
    }

    @Override
    public int layer(DeviceBlock w) {
        return w.layer();
    }

    @Override
    public DeviceBuffer inputNorm(DeviceBlock w) {
        return w.inputNorm();
    }

    @Override
    public DeviceBuffer postAttentionNorm(DeviceBlock w) {
        return w.postAttentionNorm();
    }

    @Override
    public DeviceBuffer qNorm(DeviceBlock w) {
        return w.qNorm();
    }

    @Override
    public DeviceBuffer kNorm(DeviceBlock w) {
        return w.kNorm();
    }

    @Override
    public DeviceBuffer attentionOutputNorm(DeviceBlock w) {
        return w.attentionOutputNorm();
    }

    @Override
    public DeviceBuffer mlpOutputNorm(DeviceBlock w) {
        return w.mlpOutputNorm();
    }

    /** Frees the pool and the scratch buffers (the DeviceOps and its device stay open). */
    @Override
    public void close() {
        pool.values().forEach(q -> q.forEach(DeviceBuffer::close));
        pool.clear();
        for (Rope r : ropes.values()) {
            if (r.cos != null) {
                r.cos.close();
                r.sin.close();
            }
        }
        ropes.clear();
        for (DeviceBuffer b : new DeviceBuffer[] {scores, half, weightScratch}) {
            if (b != null) {
                b.close();
            }
        }
        scores = half = weightScratch = null;
        blas.close();
    }
}
