package dev.shrink.eval;

import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.DeviceDecoder;
import dev.shrink.kernels.cuda.DeviceDecoder.Slot;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * A model folder loaded into a {@link DeviceDecoder} for batch-1 decoding on the GPU (the cuda
 * backend's speed measurement): embeddings and the LM head as fp16, RMSNorm weights as float32,
 * dense linears (bf16, fp16 or f32 in the folder) as fp16, and packed 4-bit linears (GPTQ without
 * act-order, AWQ GEMM) kept 4-bit: their codes repacked into GPTQ's layout, q|k|v and gate|up fused
 * along N, and rearranged once on the GPU into the W4A16 GEMV's tiled layout. A packed linear the
 * GEMV cannot run (bits other than 4, act-order's permuted groups, a bias, a shape it refuses) is
 * dequantized to fp16 instead, and {@link #path()} says so. Folders the decoder cannot represent at
 * all (biases on q/k/v, a sliding window shorter than the run) are refused with {@link Unsupported}.
 */
public final class DeviceModel implements AutoCloseable {
    /** The folder cannot be decoded by the device decoder; the message says why. */
    public static final class Unsupported extends RuntimeException {
        Unsupported(String message) {
            super(message);
        }
    }

    private final DeviceDecoder decoder;
    private final String path;

    private DeviceModel(DeviceDecoder decoder, String path) {
        this.decoder = decoder;
        this.path = path;
    }

    /**
     * Loads {@code model} onto {@code device} with a KV cache of {@code maxTokens} positions.
     *
     * @throws Unsupported when the decoder cannot represent the folder
     */
    public static DeviceModel load(Path model, CudaDevice device, int maxTokens) {
        try (ModelDir dir = ModelDir.open(model)) {
            return load(dir, device, maxTokens);
        }
    }

    public static DeviceModel load(ModelDir dir, CudaDevice device, int maxTokens) {
        long t0 = System.nanoTime();
        ModelConfig cfg = dir.config();
        ArchitectureSpec spec = dir.spec();
        WeightSource src = WeightSources.forModel(dir);
        if (!spec.plainLlamaBlock()) {
            throw new Unsupported(spec.unlikeLlama() + " (the device decoder runs LLaMA's block)");
        }
        int window = cfg.shortestWindow();
        if (window > 0 && window < maxTokens) {
            throw new Unsupported("sliding_window " + window + " is shorter than the " + maxTokens
                    + " positions of the run (the device decoder attends to the whole cache)");
        }
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (src.has(spec.layer(0, l.name() + ".bias"))) {
                throw new Unsupported(spec.layer(0, l.name()) + " has a bias (the device decoder's linears have none)");
            }
        }
        int C = cfg.hidden(), V = cfg.vocab();
        DeviceDecoder.Shape shape;
        try {
            shape = new DeviceDecoder.Shape(C, cfg.intermediate(), cfg.layers(), cfg.heads(), cfg.kvHeads(),
                    cfg.headDim(), V, (float) cfg.rmsNormEps(), maxTokens);
        } catch (IllegalArgumentException e) {
            throw new Unsupported(e.getMessage());
        }
        DeviceDecoder dec = new DeviceDecoder(device, shape, cfg.rope().inverseFrequencies(cfg.headDim()));
        try {
            WeightStore store = dir.weights();
            short[] emb = fp16(src, store, spec.embedTokens());
            dec.embedding(emb);
            if (src.has(spec.lmHead())) {
                dec.lmHead(fp16(src, store, spec.lmHead()));
            } else if (cfg.tiedEmbeddings()) {
                dec.lmHead(null);
            } else {
                throw new Unsupported("the weights have no '" + spec.lmHead() + "' and embeddings are not tied");
            }
            dec.finalNorm(src.floats(spec.finalNorm()));
            List<String> fallbacks = new ArrayList<>();
            String packed = null;
            for (int l = 0; l < cfg.layers(); l++) {
                dec.norms(l, src.floats(spec.layer(l, spec.inputNorm())), src.floats(spec.layer(l, spec.postAttentionNorm())));
                for (Slot slot : Slot.values()) {
                    List<String> parts = new ArrayList<>();
                    for (Role r : roles(slot)) {
                        parts.add(spec.layer(l, spec.linear(r).name()));
                    }
                    String why = null;
                    if (src instanceof GptqWeightSource g && parts.stream().allMatch(g::isQuantized)
                            && loadW4Raw(dec, l, slot, g, parts)) {
                        packed = "GPTQ";
                        continue;
                    }
                    if (src instanceof PackedWeightSource p && parts.stream().allMatch(p::isQuantized)) {
                        List<QuantizedLinear> qs = new ArrayList<>();
                        for (String x : parts) {
                            qs.add(p.linear(x));
                        }
                        why = w4Refusal(qs);
                        if (why == null) {
                            try {
                                loadW4(dec, l, slot, qs);
                                packed = src instanceof GptqWeightSource ? "GPTQ" : "AWQ";
                                continue;
                            } catch (IllegalArgumentException e) {
                                why = e.getMessage();
                            }
                        }
                        fallbacks.add(why);
                        loadDense(dec, l, slot, qs.stream().map(QuantizedLinear::dequantize).toList());
                    } else {
                        List<short[]> ws = new ArrayList<>();
                        for (String x : parts) {
                            ws.add(fp16(src, store, x + ".weight"));
                        }
                        loadDenseH(dec, l, slot, ws);
                    }
                }
            }
            int[] n = dec.counts();
            String fb = fallbacks.isEmpty() ? "" : fallbacks.size() + " packed fused linears dequantized to fp16, the first: "
                    + fallbacks.get(0);
            String p;
            if (n[0] == 0) {
                p = "device-resident fp16 cuBLAS GEMV" + (fallbacks.isEmpty() ? "" : " (" + fb + ")");
            } else {
                p = String.format(Locale.ROOT, "device-resident W4A16 GEMV (%s; %d of %d fused linears W4A16%s)", packed,
                        n[0], n[0] + n[1], fallbacks.isEmpty() ? "" : "; " + fb);
            }
            device.synchronize();
            return new DeviceModel(dec, String.format(Locale.ROOT, "%s; loaded in %.1f s", p, (System.nanoTime() - t0) / 1e9));
        } catch (RuntimeException e) {
            dec.close();
            throw e;
        }
    }

    private static Role[] roles(Slot s) {
        return switch (s) {
            case QKV -> new Role[] {Role.Q, Role.K, Role.V};
            case O -> new Role[] {Role.O};
            case GATE_UP -> new Role[] {Role.GATE, Role.UP};
            case DOWN -> new Role[] {Role.DOWN};
        };
    }

    /** Why the W4A16 GEMV cannot take these parts of one fused linear, or null when it can. */
    static String w4Refusal(List<QuantizedLinear> qs) {
        QuantizedLinear first = qs.get(0);
        for (QuantizedLinear q : qs) {
            if (q.bits() != 4) {
                return q.name() + ": " + q.bits() + "-bit (the W4A16 GEMV takes 4)";
            }
            if (q.bias() != null) {
                return q.name() + ": a bias";
            }
            if (q.groupSize() != first.groupSize() || q.K() != first.K()) {
                return q.name() + ": group size or K differs from " + first.name() + "'s";
            }
            if (!Arrays.equals(q.gIdx(), QuantizedLinear.sequentialGIdx(q.K(), q.groupSize()))) {
                return q.name() + ": act-order g_idx (groups permuted over K; the W4A16 GEMV needs g = k / group)";
            }
        }
        return null;
    }

    /**
     * GPTQ parts of one fused linear handed to the decoder as stored, without unpacking the codes:
     * qweight [K/8, N_i] rows concatenated along N, scales likewise, zero points turned into the
     * decoder's convention (z as it is) only when the folder stores v1's z − 1. False (nothing loaded)
     * when a part is not 4-bit, has a bias or act-order groups, or the parts' K or groups differ.
     */
    private static boolean loadW4Raw(DeviceDecoder dec, int l, Slot slot, GptqWeightSource g, List<String> parts) {
        List<GptqWeightSource.Packed> ps = new ArrayList<>();
        for (String x : parts) {
            GptqWeightSource.Packed p = g.packed(x);
            if (p.bits() != 4 || p.bias() != null || p.gIdx() != null || p.groupSize() <= 0
                    || p.K() != g.packed(parts.get(0)).K() || p.groupSize() != g.packed(parts.get(0)).groupSize()) {
                return false;
            }
            ps.add(p);
        }
        WeightStore store = g.store();
        int K = ps.get(0).K(), gs = ps.get(0).groupSize(), G = QuantizedLinear.groups(K, gs), rows = K / 8;
        int N = ps.stream().mapToInt(GptqWeightSource.Packed::N).sum();
        int[] qweight = new int[rows * N], qzeros = new int[G * N / 8];
        short[] scales = new short[G * N];
        int n0 = 0;
        for (GptqWeightSource.Packed p : ps) {
            int[] qw = store.ints(p.qweight());
            for (int r = 0; r < rows; r++) {
                System.arraycopy(qw, r * p.N(), qweight, r * N + n0, p.N());
            }
            int[] z = GptqPacking.unpackQzeros(store.ints(p.qzeros()), G, p.N(), 4, p.v1());
            int[] zp = GptqPacking.packQzeros(z, G, p.N(), 4, false);
            for (int gi = 0; gi < G; gi++) {
                System.arraycopy(zp, gi * p.N() / 8, qzeros, (gi * N + n0) / 8, p.N() / 8);
            }
            short[] sc = store.info(p.scales()).dtype() == DType.F16
                    ? store.data(p.scales()).toArray(ValueLayout.JAVA_SHORT_UNALIGNED)
                    : Floats.toF16(store.floats(p.scales()));
            for (int gi = 0; gi < G; gi++) {
                System.arraycopy(sc, gi * p.N(), scales, gi * N + n0, p.N());
            }
            n0 += p.N();
        }
        try {
            dec.w4(l, slot, qweight, qzeros, scales, gs);
        } catch (IllegalArgumentException e) {
            return false; // a shape the GEMV refuses: the unpacking path below says why
        }
        return true;
    }

    /** Fuses the parts along N, packs them in GPTQ's layout (zero points as they are) and hands them to the decoder. */
    private static void loadW4(DeviceDecoder dec, int l, Slot slot, List<QuantizedLinear> qs) {
        int K = qs.get(0).K(), gs = qs.get(0).groupSize(), G = QuantizedLinear.groups(K, gs);
        int N = qs.stream().mapToInt(QuantizedLinear::N).sum();
        int[] codes = new int[N * K], zeros = new int[G * N];
        short[] scales = new short[G * N];
        int n0 = 0;
        for (QuantizedLinear q : qs) {
            System.arraycopy(q.codes(), 0, codes, n0 * K, q.N() * K);
            for (int g = 0; g < G; g++) {
                System.arraycopy(q.zeros(), g * q.N(), zeros, g * N + n0, q.N());
                for (int n = 0; n < q.N(); n++) {
                    scales[g * N + n0 + n] = Floats.floatToF16(q.scales()[g * q.N() + n]);
                }
            }
            n0 += q.N();
        }
        dec.w4(l, slot, GptqPacking.packQweight(codes, N, K, 4), GptqPacking.packQzeros(zeros, G, N, 4, false), scales,
                gs);
    }

    private static void loadDense(DeviceDecoder dec, int l, Slot slot, List<float[]> parts) {
        List<short[]> h = new ArrayList<>();
        for (float[] a : parts) {
            h.add(Floats.toF16(a));
        }
        loadDenseH(dec, l, slot, h);
    }

    /** Fuses fp16 parts [N_i, K] along N (rows appended). */
    private static void loadDenseH(DeviceDecoder dec, int l, Slot slot, List<short[]> parts) {
        if (parts.size() == 1) {
            dec.dense(l, slot, parts.get(0));
            return;
        }
        short[] w = new short[parts.stream().mapToInt(a -> a.length).sum()];
        int off = 0;
        for (short[] a : parts) {
            System.arraycopy(a, 0, w, off, a.length);
            off += a.length;
        }
        dec.dense(l, slot, w);
    }

    /** A tensor as fp16 bits: copied as it is when the folder holds it in F16, else converted from float32. */
    private static short[] fp16(WeightSource src, WeightStore store, String name) {
        if (store.has(name) && store.info(name).dtype() == DType.F16) {
            return store.data(name).toArray(ValueLayout.JAVA_SHORT_UNALIGNED);
        }
        return Floats.toF16(src.floats(name));
    }

    /** Which kernels run the linears, and what fell back. */
    public String path() {
        return path;
    }

    public DeviceDecoder decoder() {
        return decoder;
    }

    public int vocab() {
        return decoder.shape().vocab();
    }

    /** Back to position 0. */
    public void reset() {
        decoder.reset();
    }

    /** Token at the next position; its logits (reused array). */
    public float[] step(int token) {
        return decoder.step(token);
    }

    @Override
    public void close() {
        decoder.close();
    }
}
