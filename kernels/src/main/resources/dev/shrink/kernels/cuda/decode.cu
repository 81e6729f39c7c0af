// Kernels of the device-resident decode benchmark (DecodeBench): random weights made on the GPU,
// and the per-token ops of a LLaMA decoder at batch 1 whose position lives in device memory
// (pos[0]), so that one token's launches can be captured once into a CUDA graph and replayed.
// Activations float32, matrix inputs fp16 (what the fp16 cuBLAS GEMV and the W4A16 GEMV read).
// Self-contained: fp16 through PTX, no headers.

__device__ __forceinline__ float d_h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short d_f2h(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// A 32-bit hash of (i, seed) (splitmix-style finaliser): the random words of the fills.
__device__ __forceinline__ unsigned int hash32(unsigned long long i, unsigned int seed) {
    unsigned long long z = i * 0x9E3779B97F4A7C15ull + ((unsigned long long) seed << 32 | seed);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (unsigned int) (z ^ (z >> 31));
}

// p[i] = random 32-bit word, i < n.
extern "C" __global__ void fill_u32(unsigned int* p, long long n, unsigned int seed) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x)
        p[i] = hash32(i, seed);
}

// p[i] = fp16 of lo + (hi − lo)·u, u uniform in [0, 1), i < n.
extern "C" __global__ void fill_f16(unsigned short* p, long long n, unsigned int seed, float lo, float hi) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x)
        p[i] = d_f2h(lo + (hi - lo) * (float) (hash32(i, seed) >> 8) * (1.0f / 16777216.0f));
}

// p[i] = v (float32), i < n.
extern "C" __global__ void fill_f32(float* p, long long n, float v) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x)
        p[i] = v;
}

// x[c] = E[tokens[pos[0]], c] (E fp16 [V, C], x float32 [C]).
extern "C" __global__ void embed_token(const unsigned short* E, const int* tokens, const int* pos, float* x, int C) {
    const long long row = tokens[pos[0]];
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x)
        x[c] = d_h2f(E[row * C + c]);
}

// y = fp16(x / sqrt(mean(x²) + eps) · w) for one row of C (x, w float32; y fp16); one block.
extern "C" __global__ void rms_norm_h(const float* x, const float* w, unsigned short* y, int C, float eps) {
    __shared__ float part[32];
    float ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.f;
    for (int i = 0; i < (int) (blockDim.x >> 5); i++) tot += part[i];
    const float inv = rsqrtf(tot / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = d_f2h(x[c] * inv * w[c]);
}

// RoPE (rotate-half) at position pos[0] on q [H, D] in place, then k [Hkv, D] rotated and v copied
// into the caches' row pos[0] (kc, vc: [Tmax, Hkv, D]). cosT, sinT: [Tmax, D/2]. qkv: q | k | v.
extern "C" __global__ void rope_append(float* qkv, float* kc, float* vc, const float* cosT, const float* sinT,
                                       const int* pos, int H, int Hkv, int D) {
    const int p = pos[0], half = D >> 1, kvDim = Hkv * D;
    float* q = qkv;
    const float* k = qkv + H * D;
    const float* v = k + kvDim;
    const int pairs = (H + Hkv) * half;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < pairs + kvDim; e += gridDim.x * blockDim.x) {
        if (e < pairs) {
            const int hh = e / half, i = e - hh * half;
            const float c = cosT[(long long) p * half + i], s = sinT[(long long) p * half + i];
            if (hh < H) {
                float* r = q + hh * D;
                const float x1 = r[i], x2 = r[i + half];
                r[i] = x1 * c - x2 * s;
                r[i + half] = x2 * c + x1 * s;
            } else {
                const float* r = k + (hh - H) * D;
                float* o = kc + (long long) p * kvDim + (hh - H) * D;
                const float x1 = r[i], x2 = r[i + half];
                o[i] = x1 * c - x2 * s;
                o[i + half] = x2 * c + x1 * s;
            }
        } else {
            const int i = e - pairs;
            vc[(long long) p * kvDim + i] = v[i];
        }
    }
}

// One query token at position pos[0] attending to cache rows 0..pos[0]: out[h, :] = softmax(q_h·K/√D)·V,
// written as fp16 (the o-projection's input). One block per head (a multiple of 32 threads, at most
// 32 warps); dynamic shared memory: (⌈Tmax⌉₄ + warps·D) floats (Tmax padded to 4: po takes float4s). q: [H, D]; kc, vc: [Tmax, Hkv, D], D a
// multiple of 4 and at most 256; head h reads kv head h / (H / Hkv). Scores: a warp per key; P·V: a
// warp per key too (lanes over D in float4s), the warps' partial rows added in shared memory.
extern "C" __global__ void attention_decode(const float* q, const float* kc, const float* vc, unsigned short* out,
                                            const int* pos, int H, int Hkv, int D, float scale, int Tmax) {
    extern __shared__ float sm[];
    float* sc = sm;                  // [Tmax]
    float* po = sm + ((Tmax + 3) & ~3);  // [warps][D], 16-byte aligned
    __shared__ float red[32];
    const int h = blockIdx.x, kvh = h / (H / Hkv), Tk = pos[0] + 1, kvDim = Hkv * D, D4 = D >> 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float4* qh = reinterpret_cast<const float4*>(q + h * D);
    for (int j = warp; j < Tk; j += warps) {
        const float4* kr = reinterpret_cast<const float4*>(kc + (long long) j * kvDim + kvh * D);
        float d = 0.f;
        for (int c = lane; c < D4; c += 32) {
            const float4 a = qh[c], b = kr[c];
            d += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
        }
        for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (lane == 0) sc[j] = d * scale;
    }
    __syncthreads();
    float mx = -3.0e38f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) mx = fmaxf(mx, sc[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < warps; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();
    float sum = 0.f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
        const float e = __expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red[warp] = sum;
    __syncthreads();                 // also: every sc[j] is final
    sum = 0.f;
    for (int w = 0; w < warps; w++) sum += red[w];
    float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
#pragma unroll 4
    for (int j = warp; j < Tk; j += warps) {
        const float p = sc[j];
        const float4* vr = reinterpret_cast<const float4*>(vc + (long long) j * kvDim + kvh * D);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int c = lane + 32 * u;
            if (c < D4) {
                const float4 v = vr[c];
                acc[u].x += p * v.x;
                acc[u].y += p * v.y;
                acc[u].z += p * v.z;
                acc[u].w += p * v.w;
            }
        }
    }
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const int c = lane + 32 * u;
        if (c < D4) reinterpret_cast<float4*>(po + warp * D)[c] = acc[u];
    }
    __syncthreads();
    const float inv = 1.f / sum;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float o = 0.f;
        for (int w = 0; w < warps; w++) o += po[w * D + i];
        out[h * D + i] = d_f2h(o * inv);
    }
}

// out[i] = fp16(silu(gu[i]) · gu[n + i]) for i < n (gu: gate | up, float32).
extern "C" __global__ void swiglu_h(const float* gu, unsigned short* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float g = gu[i];
        out[i] = d_f2h(g / (1.f + __expf(-g)) * gu[n + i]);
    }
}

// pos[0] += 1 (the next token's position), after the token's last kernel.
extern "C" __global__ void advance(int* pos) {
    pos[0] += 1;
}
