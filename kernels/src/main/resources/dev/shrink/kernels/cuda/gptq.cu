// GPTQ (Frantar et al. 2022, Algorithm 1) on the GPU: the Hessian's preparation, the quantizer, and
// the column loop of one block of columns; CudaGptq wires them with cuBLAS (the lazy block update)
// and cuSOLVER (Cholesky, inverse). The arithmetic is dev.shrink.gptq.Gptq's and Quantizer's, in the
// same float32 operations in the same order: products and differences are written with the _rn
// intrinsics so that NVRTC does not contract them into FMAs, which Java never does.
//
// W: [N, K] row-major (N outputs, K inputs); H, Hinv: [K, K]; scales, zeros: [G, N].
// mark: [N, K] bytes, 1 where the weight must end as an exact zero (it was 0 on input, or its input
// column is dead); the column loop overwrites each mark with the weight's code once it has read it.

// ---------------------------------------------------------------- the Hessian

// Hd[i, j] = (double) (S[max(i,j), min(i,j)] * f): the scaled Hessian H = (2/n)·S in float, as the
// CPU computes it, made exactly symmetric from S's lower triangle (the triangle the CPU's Cholesky
// reads). A zero diagonal (a dead input) becomes 1, its flag dead[k] = 1 and deadCount counts it.
extern "C" __global__ void hessian_prepare(const float* S, double* Hd, float f, int K, unsigned char* dead,
                                           int* deadCount) {
    const long long n = (long long) K * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e / K), j = (int) (e - (long long) i * K);
        const int hi = i > j ? i : j, lo = i > j ? j : i;
        float h = __fmul_rn(S[(long long) hi * K + lo], f);
        if (i == j) {
            dead[i] = h == 0.f ? 1 : 0;
            if (h == 0.f) {
                h = 1.f;
                atomicAdd(deadCount, 1);
            }
        }
        Hd[e] = (double) h;
    }
}

// out[0] = sum of the diagonal of Hd (one block).
extern "C" __global__ void diag_sum(const double* Hd, int K, double* out) {
    __shared__ double part[32];
    double s = 0;
    for (int i = threadIdx.x; i < K; i += blockDim.x) s += Hd[(long long) i * K + i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < (blockDim.x >> 5); w++) t += part[w];
        out[0] = t;
    }
}

// diag[i] = Hd[i, i] (for act-order's permutation, sorted on the host).
extern "C" __global__ void diag_get(const double* Hd, int K, double* diag) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < K; i += gridDim.x * blockDim.x) {
        diag[i] = Hd[(long long) i * K + i];
    }
}

// A = Hd with the damped diagonal A[i, i] = (double) ((float) Hd[i, i] + lambda), in float as
// torch adds the damp (and Gptq.quantize after it).
extern "C" __global__ void damp_copy(const double* Hd, double* A, int K, float lambda) {
    const long long n = (long long) K * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e / K), j = (int) (e - (long long) i * K);
        A[e] = i == j ? (double) __fadd_rn((float) Hd[e], lambda) : Hd[e];
    }
}

// Hinv[i, j] = (float) A[i, j] on and above the diagonal (row-major), 0 below.
extern "C" __global__ void upper_to_float(const double* A, float* Hinv, int K) {
    const long long n = (long long) K * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e / K), j = (int) (e - (long long) i * K);
        Hinv[e] = j >= i ? (float) A[e] : 0.f;
    }
}

// out[p, q] = H[perm[p], perm[q]]  (act-order: the Hessian in the permuted column order).
extern "C" __global__ void permute_symmetric(const double* H, double* out, const int* perm, int K) {
    const long long n = (long long) K * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int p = (int) (e / K), q = (int) (e - (long long) p * K);
        out[e] = H[(long long) perm[p] * K + perm[q]];
    }
}

// ---------------------------------------------------------------- weights and marks

// mark[n, k] = 1 where W[n, k] == 0 or column k is dead (then W[n, k] = 0 too), else 0;
// masked counts the marks.
extern "C" __global__ void mark_zeros(float* W, unsigned char* mark, const unsigned char* dead, int N, int K,
                                      int* masked) {
    const long long n = (long long) N * K;
    int count = 0;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int k = (int) (e % K);
        unsigned char m = W[e] == 0.f ? 1 : 0;
        if (dead[k]) {
            W[e] = 0.f;
            m = 1;
        }
        mark[e] = m;
        count += m;
    }
    for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(0xffffffffu, count, o);
    if ((threadIdx.x & 31) == 0 && count) atomicAdd(masked, count);
}

// dst[n, p] = src[n, perm[p]] (float; bytes: permute_cols_u8).
extern "C" __global__ void permute_cols(const float* src, float* dst, const int* perm, int N, int K) {
    const long long n = (long long) N * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long r = e / K;
        const int p = (int) (e - r * K);
        dst[e] = src[r * K + perm[p]];
    }
}

extern "C" __global__ void permute_cols_u8(const unsigned char* src, unsigned char* dst, const int* perm, int N,
                                           int K) {
    const long long n = (long long) N * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long r = e / K;
        const int p = (int) (e - r * K);
        dst[e] = src[r * K + perm[p]];
    }
}

// dst[n, perm[p]] = src[n, p]: back to the original column order.
extern "C" __global__ void unpermute_cols(const float* src, float* dst, const int* perm, int N, int K) {
    const long long n = (long long) N * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long r = e / K;
        const int p = (int) (e - r * K);
        dst[r * K + perm[p]] = src[e];
    }
}

extern "C" __global__ void unpermute_cols_u8(const unsigned char* src, unsigned char* dst, const int* perm, int N,
                                             int K) {
    const long long n = (long long) N * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long r = e / K;
        const int p = (int) (e - r * K);
        dst[r * K + perm[p]] = src[e];
    }
}

// ---------------------------------------------------------------- the quantizer (quant.py)

// Scale and zero of one row's values in [xmin, xmax] (xmin ≤ 0 ≤ xmax already), as Quantizer.find.
__device__ __forceinline__ void quant_params(float xmin, float xmax, int maxq, int sym, float* scale, float* zero) {
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.f) xmin = -xmax;
    }
    if (xmin == 0.f && xmax == 0.f) {
        xmin = -1.f;
        xmax = 1.f;
    }
    const float sc = __fdiv_rn(__fsub_rn(xmax, xmin), (float) maxq);
    *scale = sc;
    *zero = sym ? (float) (maxq + 1) / 2.f : rintf(__fdiv_rn(-xmin, sc));
}

// code = clamp(rint(w / scale) + zero, 0, maxq)
__device__ __forceinline__ int quant_code(float w, float scale, float zero, int maxq) {
    const float q = __fadd_rn(rintf(__fdiv_rn(w, scale)), zero);
    return (int) fmaxf(0.f, fminf((float) maxq, q));
}

__device__ __forceinline__ void warp_minmax(float* mn, float* mx) {
    for (int o = 16; o > 0; o >>= 1) {
        *mn = fminf(*mn, __shfl_xor_sync(0xffffffffu, *mn, o));
        *mx = fmaxf(*mx, __shfl_xor_sync(0xffffffffu, *mx, o));
    }
}

// Group parameters over columns [c0, c0 + cols) of every row of W: scales[g, n], zeros[g, n].
// One warp per row (per-row groups before the loop, and act-order's static groups).
extern "C" __global__ void group_params(const float* W, float* scales, float* zeros, int N, int K, int c0, int cols,
                                        int g, int maxq, int sym) {
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (n >= N) return;
    float mn = 0.f, mx = 0.f;
    for (int c = lane; c < cols; c += 32) {
        const float w = W[(long long) n * K + c0 + c];
        mn = fminf(mn, w);
        mx = fmaxf(mx, w);
    }
    warp_minmax(&mn, &mx);
    if (lane == 0) quant_params(mn, mx, maxq, sym, scales + (long long) g * N + n, zeros + (long long) g * N + n);
}

// ---------------------------------------------------------------- the column loop

#define GPTQ_BLOCK 128   // columns per lazy-update block at most (CudaGptq.MAX_BLOCK)

// Quantizes columns i1 .. i1+count-1 of every row of W, in place (they end holding q), spreading
// each column's error over the later columns of the block:
//   err = (w_i - q_i) / Hinv[i,i];   W[:, j] -= err · Hinv[i, j]   (i < j < i1+count)
// and writes err into Err: [N, count] for the lazy update of the columns after the block (a cuBLAS
// GEMM). One warp per row; lane l holds columns i1 + l + 32t (t < 4) in registers; the block's
// [count, count] tile of Hinv sits in shared memory.
//
// Group parameters: gs == -1: per row, read from scales[0, n] / zeros[0, n] (computed before);
// gpos != null (static groups): column i uses group gpos[i]'s precomputed parameters;
// otherwise at each i % gs == 0 from the current W[n, i .. i+gs) (columns past the block as they
// are, without this block's updates, as on the CPU), written to scales / zeros [i / gs, n].
extern "C" __global__ void __launch_bounds__(512)
gptq_block(float* W, const float* Hinv, float* Err, unsigned char* codes, float* scales, float* zeros,
           const int* gpos, double* loss, int N, int K, int i1, int count, int gs, int maxq, int sym) {
    extern __shared__ float Hs[];          // [count, count]: Hinv[i1 + a, i1 + b]
    for (int e = threadIdx.x; e < count * count; e += blockDim.x) {
        const int a = e / count, b = e - a * count;
        Hs[e] = Hinv[(long long) (i1 + a) * K + i1 + b];
    }
    __syncthreads();
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (n >= N) return;
    float* Wr = W + (long long) n * K;
    unsigned char* cr = codes + (long long) n * K;
    float w[4];
#pragma unroll
    for (int t = 0; t < 4; t++) {
        const int c = lane + 32 * t;
        w[t] = c < count ? Wr[i1 + c] : 0.f;
    }
    float sc = 0.f, z = 0.f;
    if (gpos == 0) {
        if (gs == -1) {
            sc = scales[n];
            z = zeros[n];
        } else if (i1 % gs != 0) {     // a group that began in an earlier block
            const long long g = i1 / gs;
            sc = scales[g * N + n];
            z = zeros[g * N + n];
        }
    }
    double lossAcc = 0;
#pragma unroll
    for (int s = 0; s < 4; s++) {
        for (int o = 0; o < 32; o++) {
            const int a = s * 32 + o;
            if (a >= count) break;
            const int i = i1 + a;
            if (gpos != 0) {
                const long long g = gpos[i];
                sc = scales[g * N + n];
                z = zeros[g * N + n];
            } else if (gs != -1 && i % gs == 0) {
                const int end = min(i + gs, K);
                float mn = 0.f, mx = 0.f;
#pragma unroll
                for (int t = 0; t < 4; t++) {
                    const int col = i1 + lane + 32 * t;
                    if (lane + 32 * t < count && col >= i && col < end) {
                        mn = fminf(mn, w[t]);
                        mx = fmaxf(mx, w[t]);
                    }
                }
                for (int col = i1 + count + lane; col < end; col += 32) {
                    const float v = Wr[col];
                    mn = fminf(mn, v);
                    mx = fmaxf(mx, v);
                }
                warp_minmax(&mn, &mx);
                quant_params(mn, mx, maxq, sym, &sc, &z);
                if (lane == 0) {
                    const long long g = i / gs;
                    scales[g * N + n] = sc;
                    zeros[g * N + n] = z;
                }
            }
            const float wi = __shfl_sync(0xffffffffu, w[s], o);
            // lane 0 reads the mark and, later, overwrites it with the code: the shuffle orders the two
            const bool masked = __shfl_sync(0xffffffffu, lane == 0 ? (int) cr[i] : 0, 0) != 0;
            // a masked weight takes the code of 0: z, so q = scale · (z − z) = 0 exactly
            const int c = quant_code(masked ? 0.f : wi, sc, z, maxq);
            const float q = __fmul_rn(sc, __fsub_rn((float) c, z));
            const float d = Hs[a * count + a];
            const float diff = __fsub_rn(wi, q);
            const float err = __fdiv_rn(diff, d);
            if (lane == 0) {
                lossAcc += (double) diff * diff / ((double) d * d) / 2;
                Err[(long long) n * count + a] = err;
                cr[i] = (unsigned char) c;
            }
            if (lane == o) w[s] = q;
            const float* hrow = Hs + a * count;
#pragma unroll
            for (int t = 0; t < 4; t++) {
                const int col = lane + 32 * t;
                if (col > a && col < count) w[t] = __fsub_rn(w[t], __fmul_rn(err, hrow[col]));
            }
        }
    }
#pragma unroll
    for (int t = 0; t < 4; t++) {
        const int c = lane + 32 * t;
        if (c < count) Wr[i1 + c] = w[t];
    }
    if (lane == 0) atomicAdd(loss, lossAcc);
}
