// Forward-pass kernels on device-resident tensors (DeviceOps), beside ops.cu's rms_norm and swiglu,
// which DeviceOps reuses. Compiled at run time by NVRTC; self-contained (no #include).
//
// Row-major float32. Dimension letters: M rows (B sequences × T tokens), C hidden, H query heads,
// Hkv key/value heads, D head dim, V vocabulary, N columns of a matrix.

#define NEG_INF __int_as_float(0xff800000)
#define POS_INF __int_as_float(0x7f800000)

// ---------------------------------------------------------------- fp16 and Java-exact float helpers

// fp16 bits to float (exact).
__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// float to fp16 bits as Java's Float.floatToFloat16 (core's Floats.floatToF16): round to nearest
// even, subnormal results kept, magnitudes from 65520 up to +-Inf (cvt.rn without .satfinite).
// A NaN keeps its sign and folds its payload as the JDK's library code does (cvt alone would give
// the canonical 0x7fff and lose the sign).
__device__ __forceinline__ unsigned short f2h(float f) {
    const unsigned int b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short) (((b >> 16) & 0x8000u) | 0x7c00u | ((b & 0x007fe000u) >> 13)
                                 | ((b & 0x00001ff0u) >> 4) | (b & 0xfu));
    }
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ bool is_nan(float a) {
    return (__float_as_uint(a) & 0x7fffffffu) > 0x7f800000u;
}

// Java's Math.min(float, float): NaN if either is NaN, and -0 below +0 (so that a tree reduction
// gives what Java's left-to-right loop gives: both are commutative and associative up to NaN payload).
__device__ __forceinline__ float jmin(float a, float b) {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    if (a == 0.f && b == 0.f) return __uint_as_float(__float_as_uint(a) | __float_as_uint(b)); // -0 if either is
    return a <= b ? a : b;
}

// Java's Math.max(float, float): NaN if either is NaN, and +0 above -0.
__device__ __forceinline__ float jmax(float a, float b) {
    if (is_nan(a)) return a;
    if (is_nan(b)) return b;
    if (a == 0.f && b == 0.f) return __uint_as_float(__float_as_uint(a) & __float_as_uint(b)); // +0 unless both -0
    return a >= b ? a : b;
}

// x[m, :] = E[ids[m], :].   E: [V, C], ids: [M] (checked on the host), x: [M, C].
extern "C" __global__ void embed_gather(const float* E, const int* ids, float* x, long long M, int C) {
    const long long n = M * C;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long m = e / C;
        const int c = (int) (e - m * C);
        x[e] = E[(long long) ids[m] * C + c];
    }
}

// Rotate-half RoPE in place on x: [rows, heads, D] where row r is token r % T of its sequence
// (every sequence starts at position 0). cos, sin: [T, D/2], the tables of positions 0..T-1.
// x[i] = x1*cos - x2*sin, x[i + D/2] = x2*cos + x1*sin (as ops.cu's rope and ReferenceOps).
extern "C" __global__ void rope_seq(float* x, const float* cosT, const float* sinT, long long rows, int heads,
                                    int D, int T) {
    const int half = D >> 1;
    const long long n = rows * heads * half;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e % half);
        const long long th = e / half;       // row * heads + head
        const int t = (int) ((th / heads) % T);
        const float c = cosT[(long long) t * half + i], s = sinT[(long long) t * half + i];
        float* r = x + th * D;
        const float x1 = r[i], x2 = r[i + half];
        r[i] = x1 * c - x2 * s;
        r[i + half] = x2 * c + x1 * s;
    }
}

// y[m, :] += b.   y: [M, N], b: [N].
extern "C" __global__ void add_bias(float* y, const float* b, long long M, int N) {
    const long long n = M * N;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        y[e] += b[e % N];
    }
}

// Causal softmax in place over the rows of S: [R, T, T] (R heads of one sequence, scores already
// scaled by 1/sqrt(D)). Row i of each [T, T] matrix keeps keys lo..i, lo = max(0, i - window + 1)
// with a sliding window (window > 0; Ops.attention's semantics), else 0: p_j = exp(s_j - max) / sum,
// and p_j = 0 for the other keys, so that the following P·V product may run over all T keys. One
// block per row; the sum in double, as ReferenceOps sums its softmax weights.
// With softcap > 0 (Gemma 2's attn_logit_softcapping c) each visible score s first becomes c*tanh(s/c).
extern "C" __global__ void causal_softmax(float* S, int T, int window, float softcap) {
    __shared__ float fs[32];
    __shared__ double ds[32];
    const long long row = blockIdx.x;
    const int i = (int) (row % T);
    const int lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    float* s = S + row * T;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (softcap > 0.f) {
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) s[j] = tanhf(s[j] / softcap) * softcap;
        __syncthreads();
    }
    float mx = NEG_INF;
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, s[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) fs[warp] = mx;
    __syncthreads();
    mx = NEG_INF;
    for (int w = 0; w < warps; w++) mx = fmaxf(mx, fs[w]);
    double sum = 0;
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) sum += (double) expf(s[j] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) ds[warp] = sum;
    __syncthreads();
    sum = 0;
    for (int w = 0; w < warps; w++) sum += ds[w];
    const float inv = (float) (1.0 / sum);
    for (int j = threadIdx.x; j < T; j += blockDim.x) s[j] = j >= lo && j <= i ? expf(s[j] - mx) * inv : 0.f;
}

// x[i] *= s for i < n (Gemma's embedding normalizer).
extern "C" __global__ void scale_into(float* x, float s, long long n) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        x[e] *= s;
    }
}

// x[i] = cap * tanh(x[i] / cap) for i < n (Gemma 2's final logit soft-capping).
extern "C" __global__ void softcap_into(float* x, float cap, long long n) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        x[e] = tanhf(x[e] / cap) * cap;
    }
}

// flag[0] = 1 if any of x[0..n) is NaN or Inf (flag is left alone otherwise).
extern "C" __global__ void any_nonfinite(const float* x, long long n, int* flag) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        if ((__float_as_uint(x[e]) & 0x7f800000u) == 0x7f800000u) { // exponent all ones: Inf or NaN
            flag[0] = 1;
            return;
        }
    }
}

// ---------------------------------------------------------------- elementwise

// y[i] = fp16 bits of x[i] (f2h: Java's Float.floatToFloat16), i < n.
extern "C" __global__ void to_half(const float* x, unsigned short* y, long long n) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x)
        y[e] = f2h(x[e]);
}

// x[i] += d[i], i < n (the residual add).
extern "C" __global__ void add_into(float* x, const float* d, long long n) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x)
        x[e] += d[e];
}

// dst[r, dstCol0 + c] = src[r, srcCol0 + c] for r < rows, c < width; row strides srcLd, dstLd (floats).
extern "C" __global__ void copy_rows(const float* src, int srcLd, int srcCol0, float* dst, int dstLd, int dstCol0,
                                     long long rows, int width) {
    const long long n = rows * width;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long r = e / width;
        const int c = (int) (e - r * width);
        dst[r * dstLd + dstCol0 + c] = src[r * srcLd + srcCol0 + c];
    }
}

// ---------------------------------------------------------------- mixture of experts

// dst[i, c] = src[rows[i], c] for i < n, c < C: the rows routed to one expert. rows: int32 [n] (checked on
// the host), src: [*, C], dst: [n, C].
extern "C" __global__ void gather_rows(const float* src, const int* rows, float* dst, long long n, int C) {
    const long long total = n * C;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < total;
         e += (long long) gridDim.x * blockDim.x) {
        const long long i = e / C;
        const int c = (int) (e - i * C);
        dst[e] = src[(long long) rows[i] * C + c];
    }
}

// out[rows[i], c] += w[i] * y[i, c] for i < n, c < C: an expert's output added into the mixture, the product
// rounded to float before the add (the _rn intrinsics keep NVRTC from contracting them into one FMA), as
// transformers' y * w then index_add_ and the host's Java loop. rows: int32 [n], distinct (one thread per
// element writes it: no races), w: float32 [n], y: [n, C], out: [*, C].
extern "C" __global__ void add_scaled_rows(const float* y, const int* rows, const float* w, float* out, long long n,
                                           int C) {
    const long long total = n * C;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < total;
         e += (long long) gridDim.x * blockDim.x) {
        const long long i = e / C;
        const int c = (int) (e - i * C);
        float* o = out + (long long) rows[i] * C + c;
        *o = __fadd_rn(*o, __fmul_rn(w[i], y[e]));
    }
}

// ---------------------------------------------------------------- KV cache quantization round trip

// In place on x: [groups, D] (groups = rows * KV heads; one group = one token's one head), what
// core's KvCacheType.roundTrip does on the host, bit for bit: per group
//   scale = fp16((max - min) * invQmax)   zero = fp16(min)   inv = 1 / scale
//   q = clamp(rint((x - zero) * inv), 0, qmax)  (NaN -> 0)     x = q * scale + zero
// with Java's min/max (jmin/jmax), float32 operations each rounded to nearest (the _rn intrinsics
// keep NVRTC from contracting q * scale + zero into one FMA, which would round once, not twice),
// invQmax = 1f / qmax computed by the caller as Java computes it. One warp per group.
extern "C" __global__ void kv_round_trip(float* x, long long groups, int D, int qmax, float invQmax) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long) gridDim.x * (blockDim.x >> 5);
    for (long long g = blockIdx.x * (long long) (blockDim.x >> 5) + (threadIdx.x >> 5); g < groups; g += warps) {
        float* r = x + g * D;
        float mn = POS_INF, mx = NEG_INF;
        for (int i = lane; i < D; i += 32) {
            const float v = r[i];
            mn = jmin(mn, v);
            mx = jmax(mx, v);
        }
        for (int o = 16; o > 0; o >>= 1) {
            mn = jmin(mn, __shfl_xor_sync(0xffffffffu, mn, o));
            mx = jmax(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        }
        const float scale = h2f(f2h(__fmul_rn(__fsub_rn(mx, mn), invQmax)));
        const float zero = h2f(f2h(mn));
        const float inv = __fdiv_rn(1.0f, scale);
        const float fq = (float) qmax;
        for (int i = lane; i < D; i += 32) {
            const float v = rintf(__fmul_rn(__fsub_rn(r[i], zero), inv));
            const int q = v >= fq ? qmax : v > 0.f ? (int) v : 0;
            r[i] = __fadd_rn(__fmul_rn((float) q, scale), zero);
        }
    }
}

// ---------------------------------------------------------------- GPTQ dequantization

// W[n, k] = fp16(scale[g, n] * (float) (code[n, k] - zero[g, n])), one float32 product rounded to
// fp16 once (core's QuantizedLinear.dequantize, then Floats.floatToF16), with g = gIdx[k] when gIdx
// is given (act-order), else k / groupSize (groupSize <= 0: one group). Packing (core's GptqPacking,
// bits 4 or 8, so no field straddles a word): qweight [K*bits/32, N], code of (n, k) at bits
// bits*(k % (32/bits)) of word [k / (32/bits), n]; qzeros [G, N*bits/32], zero field of (g, n) at
// bits (n*bits) % 32 of word [g, n*bits/32], plus zeroAdd (1 for the v1 "gptq" convention that
// stores z - 1, 0 for v2); scales fp16 [G, N]; out fp16 [N, K] row-major. One thread per qweight
// word: it writes the 32/bits consecutive k of its column n.
extern "C" __global__ void dequant_gptq(const unsigned int* qweight, const unsigned int* qzeros,
                                        const unsigned short* scales, const int* gIdx, int K, int N, int groupSize,
                                        int bits, int zeroAdd, unsigned short* out) {
    const int per = 32 / bits;
    const unsigned int mask = (1u << bits) - 1u;
    const long long zwords = (long long) N * bits / 32;
    const long long words = (long long) (K / per) * N;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < words;
         e += (long long) gridDim.x * blockDim.x) {
        const long long rw = e / N;
        const int n = (int) (e - rw * N);
        const unsigned int w = qweight[e];
        const int k0 = (int) rw * per;
        const long long zcol = ((long long) n * bits) >> 5;
        const int zshift = (int) (((long long) n * bits) & 31);
        unsigned short* o = out + (long long) n * K + k0;
        for (int j = 0; j < per; j++) {
            const int k = k0 + j;
            const long long g = gIdx ? gIdx[k] : (groupSize > 0 ? k / groupSize : 0);
            const int z = (int) ((qzeros[g * zwords + zcol] >> zshift) & mask) + zeroAdd;
            const int code = (int) ((w >> (j * bits)) & mask);
            o[j] = f2h(h2f(scales[g * N + n]) * (float) (code - z));
        }
    }
}

// Holds the stream for ns nanoseconds (one thread spinning on the global timer): for benchmarks,
// so that the work queued behind it is all launched before it runs and CUDA events then time the
// GPU alone, not the host's launch rate.
extern "C" __global__ void stall_ns(long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while ((long long) (t - t0) < ns);
}
