package dev.shrink.kernels.cuda;

/** decode.cu's kernels, shared by {@link DecodeBench} (random weights) and {@link DeviceDecoder} (a model's). */
final class DecodeKernels {
    final CudaKernel fillU32, fillF16, fillF, embed, norm, rope, attention, swiglu, advance;

    DecodeKernels(CudaModule m) {
        fillU32 = m.kernel("fill_u32");
        fillF16 = m.kernel("fill_f16");
        fillF = m.kernel("fill_f32");
        embed = m.kernel("embed_token");
        norm = m.kernel("rms_norm_h");
        rope = m.kernel("rope_append");
        attention = m.kernel("attention_decode");
        swiglu = m.kernel("swiglu_h");
        advance = m.kernel("advance");
    }

    void fillU(DeviceBuffer b, long words, int seed) {
        fillU32.launch(W4a16Bench.blocks(words), 1, 256, 0, b, words, seed);
    }

    void fillH(DeviceBuffer b, long n, int seed, float lo, float hi) {
        fillF16.launch(W4a16Bench.blocks(n), 1, 256, 0, b, n, seed, lo, hi);
    }

    /**
     * One decoder layer for one token whose position is in device memory ({@code pos[0]}): RMSNorm,
     * q|k|v, RoPE with the KV-cache append, single-query attention (GQA), o added into the residual
     * x, RMSNorm, gate|up, SwiGLU, down added into x. Activations float32, matrix inputs fp16.
     *
     * @param shapes W4A16 kernel shapes per linear (q|k|v, o, gate|up, down), or null entries: the default
     */
    void layer(CublasHandle blas, W4a16Gemv gemv, DecodeLinear qkvL, DecodeLinear oL, DecodeLinear guL,
               DecodeLinear downL, DeviceBuffer n1, DeviceBuffer n2, DeviceBuffer kc, DeviceBuffer vc,
               W4a16Gemv.Tc[] shapes, Buffers b, int C, int F, int H, int HKV, int D, int Tmax, float eps) {
        float scale = (float) (1.0 / Math.sqrt(D));
        int attShared = (((Tmax + 3) & ~3) + 8 * D) * 4;
        norm.launch(1, 1, 1024, 0, b.x, n1, b.xh, C, eps);
        qkvL.apply(blas, gemv, shapes[0], b.xh, b.qkv, false);
        rope.launch(((H + HKV) * D / 2 + HKV * D + 255) / 256, 1, 256, 0, b.qkv, kc, vc, b.cos, b.sin, b.pos, H, HKV,
                D);
        attention.launch(H, 1, 256, attShared, b.qkv, kc, vc, b.att, b.pos, H, HKV, D, scale, Tmax);
        oL.apply(blas, gemv, shapes[1], b.att, b.x, true);
        norm.launch(1, 1, 1024, 0, b.x, n2, b.xh, C, eps);
        guL.apply(blas, gemv, shapes[2], b.xh, b.gu, false);
        swiglu.launch((F + 255) / 256, 1, 256, 0, b.gu, b.hh, F);
        downL.apply(blas, gemv, shapes[3], b.hh, b.x, true);
    }

    /**
     * The per-token activations: x (residual, float32 [C]), xh (fp16 norm output, [max(C, F)]),
     * qkv (float32), att (fp16 [H·D]), gu (float32 [2F]), hh (fp16 [F]), logits (float32 [V]),
     * pos (int), the token ids [Tmax], RoPE cos/sin [Tmax, D/2].
     */
    record Buffers(DeviceBuffer x, DeviceBuffer xh, DeviceBuffer qkv, DeviceBuffer att, DeviceBuffer gu,
                   DeviceBuffer hh, DeviceBuffer logits, DeviceBuffer pos, DeviceBuffer toks, DeviceBuffer cos,
                   DeviceBuffer sin) {
        static Buffers alloc(CudaDevice dev, int C, int F, int H, int HKV, int D, int V, int Tmax) {
            return new Buffers(dev.alloc(C * 4L), dev.alloc(Math.max(C, F) * 2L),
                    dev.alloc((long) (H + 2 * HKV) * D * 4), dev.alloc((long) H * D * 2), dev.alloc(2L * F * 4),
                    dev.alloc(F * 2L), dev.alloc(V * 4L), dev.alloc(4), dev.alloc(Tmax * 4L),
                    dev.alloc((long) Tmax * D / 2 * 4), dev.alloc((long) Tmax * D / 2 * 4));
        }

        java.util.List<DeviceBuffer> all() {
            return java.util.List.of(x, xh, qkv, att, gu, hh, logits, pos, toks, cos, sin);
        }

        void close() {
            for (DeviceBuffer d : all()) {
                d.close();
            }
        }
    }
}
