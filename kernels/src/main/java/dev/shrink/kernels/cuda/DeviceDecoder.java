package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A LLaMA-family decoder resident on the GPU for batch-1 decoding of a real model (eval's speed
 * measurement): embeddings (fp16), RMSNorm weights (float32), per layer q|k|v, o, gate|up and down as
 * fp16 weights (cuBLAS GEMV) or W4A16 packed codes ({@link W4a16Gemv}'s tiled tensor-core GEMV), the
 * KV cache (float32), the LM head (fp16, cuBLAS). The per-token work is {@link DecodeBench}'s
 * (decode.cu's kernels, {@link DecodeKernels#layer}); the position lives in device memory, so after
 * one eager token the token's launches are captured once into a CUDA graph and replayed.
 *
 * <p>Filled by the loader through {@link #embedding}, {@link #lmHead}, {@link #finalNorm},
 * {@link #norms}, {@link #dense} and {@link #w4}, then driven by {@link #reset} and {@link #step}
 * (one token in, its logits out: copied back to the host, where the caller picks the next token).
 */
public final class DeviceDecoder implements AutoCloseable {
    /** The linears of a layer as the decoder fuses them (concatenated along N, in this order). */
    public enum Slot { QKV, O, GATE_UP, DOWN }

    /**
     * @param maxTokens the KV cache's length: positions 0..maxTokens − 1
     */
    public record Shape(int hidden, int intermediate, int layers, int heads, int kvHeads, int headDim, int vocab,
                        float eps, int maxTokens) {
        public Shape {
            if (hidden <= 0 || intermediate <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0
                    || vocab <= 0 || maxTokens <= 0) {
                throw new IllegalArgumentException("device decoder: bad shape " + this);
            }
            if (headDim % 4 != 0 || headDim > 256) {
                throw new IllegalArgumentException("device decoder: head_dim " + headDim
                        + " is not supported (a multiple of 4, at most 256)");
            }
            if (maxTokens > 8192) {
                throw new IllegalArgumentException("device decoder: " + maxTokens
                        + " positions: the attention kernel's scores fit 8192 in shared memory");
            }
        }

        /** (N, K) of a slot's fused linear. */
        public int[] dims(Slot s) {
            return switch (s) {
                case QKV -> new int[] {(heads + 2 * kvHeads) * headDim, hidden};
                case O -> new int[] {hidden, heads * headDim};
                case GATE_UP -> new int[] {2 * intermediate, hidden};
                case DOWN -> new int[] {hidden, intermediate};
            };
        }
    }

    private final CudaDevice dev;
    private final Shape s;
    private final CublasHandle blas;
    private final W4a16Gemv gemv;
    private final CudaModule mod;
    private final DecodeKernels k;
    private final DecodeKernels.Buffers b;
    private final DecodeLinear[][] lin;
    private final DeviceBuffer[] n1, n2, kc, vc;
    private DeviceBuffer emb, head, normF;
    private boolean tied;
    private final W4a16Gemv.Tc[] shapes = new W4a16Gemv.Tc[4];
    private CudaGraph graph;
    private int pos;
    private final float[] logits;

    /**
     * Allocates the activations, the KV cache and RoPE's tables on {@code dev}.
     *
     * @param invFreq RoPE's inverse frequencies [headDim / 2] (rotate-half convention)
     */
    public DeviceDecoder(CudaDevice dev, Shape shape, double[] invFreq) {
        this.dev = dev;
        this.s = shape;
        int D = shape.headDim(), T = shape.maxTokens(), L = shape.layers();
        if (invFreq.length != D / 2) {
            throw new IllegalArgumentException("device decoder: " + invFreq.length + " RoPE frequencies, expected " + D / 2);
        }
        dev.makeCurrent();
        blas = dev.openCublas();
        gemv = new W4a16Gemv(dev);
        mod = dev.module("decode.cu");
        k = new DecodeKernels(mod);
        b = DecodeKernels.Buffers.alloc(dev, shape.hidden(), shape.intermediate(), shape.heads(), shape.kvHeads(), D,
                shape.vocab(), T);
        lin = new DecodeLinear[L][4];
        n1 = new DeviceBuffer[L];
        n2 = new DeviceBuffer[L];
        kc = new DeviceBuffer[L];
        vc = new DeviceBuffer[L];
        long kvBytes = (long) T * shape.kvHeads() * D * 4;
        for (int l = 0; l < L; l++) {
            kc[l] = dev.alloc(kvBytes);
            vc[l] = dev.alloc(kvBytes);
        }
        // cos/sin of position·inv_freq, the product in float32 as torch forms it
        float[] ct = new float[T * D / 2], st = new float[T * D / 2];
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < D / 2; i++) {
                float ang = (float) t * (float) invFreq[i];
                ct[t * D / 2 + i] = (float) Math.cos(ang);
                st[t * D / 2 + i] = (float) Math.sin(ang);
            }
        }
        dev.upload(MemorySegment.ofArray(ct), b.cos(), 0);
        dev.upload(MemorySegment.ofArray(st), b.sin(), 0);
        logits = new float[shape.vocab()];
    }

    public Shape shape() {
        return s;
    }

    public CudaDevice device() {
        return dev;
    }

    /** The token embedding, fp16 bits [V, C]. */
    public void embedding(short[] fp16) {
        emb = upload(emb, fp16, (long) s.vocab() * s.hidden(), "embedding");
    }

    /** The output head, fp16 bits [V, C]; null: tied to the embedding. */
    public void lmHead(short[] fp16) {
        if (fp16 == null) {
            tied = true;
            return;
        }
        head = upload(head, fp16, (long) s.vocab() * s.hidden(), "lm_head");
    }

    public void finalNorm(float[] w) {
        normF = uploadF(normF, w, s.hidden(), "final norm");
    }

    /** Layer {@code l}'s attention and MLP RMSNorm weights. */
    public void norms(int l, float[] input, float[] postAttention) {
        n1[l] = uploadF(n1[l], input, s.hidden(), "input norm");
        n2[l] = uploadF(n2[l], postAttention, s.hidden(), "post-attention norm");
    }

    /** Layer {@code l}'s fused linear {@code slot} as fp16 bits [N, K] (rows of the fused parts in Slot order). */
    public void dense(int l, Slot slot, short[] fp16) {
        int[] nk = s.dims(slot);
        DeviceBuffer w = upload(null, fp16, (long) nk[0] * nk[1], "layer " + l + " " + slot);
        set(l, slot, DecodeLinear.dense(nk[0], nk[1], w));
    }

    /**
     * Layer {@code l}'s fused linear {@code slot} as 4-bit GPTQ-layout tensors without act-order
     * (group g = k / group): qweight int32 [K/8, N], qzeros int32 [G, N/8] (zero points as they are,
     * gptq_v2), scales fp16 bits [G, N]; qweight is rearranged once on the GPU into the tiled layout.
     *
     * @throws IllegalArgumentException when the GEMV cannot take the shape (N % 8, group % 32, K % group)
     */
    public void w4(int l, Slot slot, int[] qweight, int[] qzeros, short[] scales, int group) {
        int[] nk = s.dims(slot);
        int N = nk[0], K = nk[1], gs = group == -1 ? K : group;
        if (N % 8 != 0 || gs % 32 != 0 || K % gs != 0) {
            throw new IllegalArgumentException("W4A16 GEMV needs N % 8 == 0, a group multiple of 32 and K a multiple of"
                    + " the group; layer " + l + " " + slot + " has N = " + N + ", K = " + K + ", group = " + group);
        }
        int G = K / gs;
        if (qweight.length != K / 8 * N || qzeros.length != G * N / 8 || scales.length != G * N) {
            throw new IllegalArgumentException("layer " + l + " " + slot + ": W4A16 tensors of the wrong size for N = "
                    + N + ", K = " + K + ", group = " + gs);
        }
        DeviceBuffer qw = dev.alloc(W4a16Gemv.tiledBytes(K, N));
        try (DeviceBuffer raw = dev.alloc((long) qweight.length * 4)) {
            dev.upload(MemorySegment.ofArray(qweight), raw, 0);
            gemv.tile(raw, qw, K, N);
            dev.synchronize();
        }
        DeviceBuffer qz = dev.alloc((long) qzeros.length * 4), sc = dev.alloc((long) scales.length * 2);
        dev.upload(MemorySegment.ofArray(qzeros), qz, 0);
        dev.upload(MemorySegment.ofArray(scales), sc, 0);
        set(l, slot, new DecodeLinear(N, K, gs, false, null, qw, qz, sc));
    }

    private void set(int l, Slot slot, DecodeLinear d) {
        DecodeLinear old = lin[l][slot.ordinal()];
        if (old != null) {
            dev.synchronize();
            old.close();
        }
        lin[l][slot.ordinal()] = d;
        closeGraph();
    }

    /** Linears held as W4A16 and as fp16. */
    public int[] counts() {
        int w4 = 0, fp16 = 0;
        for (DecodeLinear[] ly : lin) {
            for (DecodeLinear d : ly) {
                if (d != null) {
                    if (d.w4()) {
                        w4++;
                    } else {
                        fp16++;
                    }
                }
            }
        }
        return new int[] {w4, fp16};
    }

    /** Weight bytes read per token: every linear, the norms, the LM head and one embedding row. */
    public long weightBytesPerToken() {
        long n = (long) s.vocab() * s.hidden() * 2 + s.hidden() * 2L + s.hidden() * 4L;
        for (DecodeLinear[] ly : lin) {
            for (DecodeLinear d : ly) {
                n += d == null ? 0 : d.bytes();
            }
        }
        return n + 2L * s.layers() * s.hidden() * 4;
    }

    /** The next token is at position 0 (the cache is overwritten from there). */
    public void reset() {
        pos = 0;
        dev.fill32(b.pos(), 0, 1);
    }

    /** The position the next {@link #step} writes. */
    public int position() {
        return pos;
    }

    /**
     * Runs token {@code token} at the current position (appending to the KV cache) and returns the
     * logits after it (float32 [V], an array reused by the next call).
     */
    public float[] step(int token) {
        if (pos >= s.maxTokens()) {
            throw new IllegalStateException("device decoder: the KV cache holds " + s.maxTokens() + " positions");
        }
        if (token < 0 || token >= s.vocab()) {
            throw new IllegalArgumentException("token " + token + " outside the vocabulary of " + s.vocab());
        }
        check();
        dev.upload(MemorySegment.ofArray(new int[] {token}), b.toks(), pos * 4L);
        if (graph == null) {
            token(); // eager (cuBLAS settles its kernels and workspace outside a capture)
            graph = CudaGraph.capture(dev, this::token);
        } else {
            graph.launch();
        }
        dev.download(b.logits(), 0, MemorySegment.ofArray(logits));
        pos++;
        return logits;
    }

    private void check() {
        if (emb == null || normF == null || (head == null && !tied)) {
            throw new IllegalStateException("device decoder: embedding, final norm or LM head not loaded");
        }
        for (int l = 0; l < s.layers(); l++) {
            if (n1[l] == null || Arrays.asList(lin[l]).contains(null)) {
                throw new IllegalStateException("device decoder: layer " + l + " not fully loaded");
            }
        }
    }

    /** One token's launches (position in device memory). */
    private void token() {
        int C = s.hidden();
        DeviceBuffer lm = tied ? emb : head;
        k.embed.launch((C + 255) / 256, 1, 256, 0, emb, b.toks(), b.pos(), b.x(), C);
        for (int l = 0; l < s.layers(); l++) {
            DecodeLinear[] ly = lin[l];
            k.layer(blas, gemv, ly[0], ly[1], ly[2], ly[3], n1[l], n2[l], kc[l], vc[l], shapes, b, C, s.intermediate(),
                    s.heads(), s.kvHeads(), s.headDim(), s.maxTokens(), s.eps());
        }
        k.norm.launch(1, 1, 1024, 0, b.x(), normF, b.xh(), C, s.eps());
        blas.gemmRowMajorF16(false, true, 1, s.vocab(), C, 1f, b.xh().address(), C, lm.address(), C, 0f,
                b.logits().address(), s.vocab());
        k.advance.launch(1, 1, 1, 0, b.pos());
    }

    private DeviceBuffer upload(DeviceBuffer old, short[] v, long n, String what) {
        if (v.length != n) {
            throw new IllegalArgumentException("device decoder: " + what + " has " + v.length + " values, expected " + n);
        }
        if (old != null) {
            dev.synchronize();
            old.close();
        }
        DeviceBuffer d = dev.alloc(n * 2);
        dev.upload(MemorySegment.ofArray(v), d, 0);
        closeGraph();
        return d;
    }

    private DeviceBuffer uploadF(DeviceBuffer old, float[] v, long n, String what) {
        if (v.length != n) {
            throw new IllegalArgumentException("device decoder: " + what + " has " + v.length + " values, expected " + n);
        }
        if (old != null) {
            dev.synchronize();
            old.close();
        }
        DeviceBuffer d = dev.alloc(n * 4);
        dev.upload(MemorySegment.ofArray(v), d, 0);
        closeGraph();
        return d;
    }

    /**
     * How the W4A16 GEMVs launch ({@link W4a16Gemv#pdl}: plain, or programmatic dependent launch so
     * that each may start while the kernel before it drains); the token's graph is captured again.
     * Returns false where PDL is unavailable (the launches stay plain).
     */
    public boolean pdl(W4a16Gemv.Pdl mode) {
        closeGraph();
        return gemv.pdl(mode);
    }

    private void closeGraph() {
        if (graph != null) {
            graph.close();
            graph = null;
        }
    }

    @Override
    public void close() {
        dev.synchronize();
        closeGraph();
        for (int l = 0; l < s.layers(); l++) {
            for (DecodeLinear d : lin[l]) {
                if (d != null) {
                    d.close();
                }
            }
            for (DeviceBuffer d : new DeviceBuffer[] {n1[l], n2[l], kc[l], vc[l]}) {
                if (d != null) {
                    d.close();
                }
            }
        }
        for (DeviceBuffer d : new DeviceBuffer[] {emb, head, normF}) {
            if (d != null) {
                d.close();
            }
        }
        b.close();
        gemv.close();
        mod.close();
        blas.close();
    }
}
