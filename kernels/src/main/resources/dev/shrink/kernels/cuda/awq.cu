// AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization") on the GPU: the quantizer of
// dev.shrink.awq.AwqQuantizer, the grid of the scale search (ScaleSearch) and of the clip search
// (ClipSearch) as batched kernels, and the reductions their losses need. CudaAwq wires them with
// cuBLAS. The arithmetic is the CPU's, in the same float32 operations: products, quotients and sums
// are written with the _rn intrinsics so that NVRTC does not contract them into FMAs, which Java
// never does; sums of losses are in double, as on the CPU (in another order).
//
// W: [N, K] row-major (N outputs, K inputs), groups of len consecutive columns (K % len == 0),
// G = K / len. One warp handles one (candidate, row, group) item; lanes stride over the group.
//
// The quantizer, per (row, group) of the weights w it quantizes (AwqQuantizer):
//   s = max(max(w) − min(w), 1e−5) / 15;  z = clamp(−rint(min(w) / s), 0, 15)
//   q = clamp(rint(w / s) + z, 0, 15);     Q(w) = (q − z) · s

#define FULL 0xffffffffu

__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

__device__ __forceinline__ void awq_params(float mn, float mx, float& s, float& z) {
    s = __fdiv_rn(fmaxf(__fsub_rn(mx, mn), 1e-5f), 15.f);
    z = fmaxf(0.f, fminf(15.f, -rintf(__fdiv_rn(mn, s))));
}

__device__ __forceinline__ float awq_code(float w, float s, float z) {
    return fmaxf(0.f, fminf(15.f, __fadd_rn(rintf(__fdiv_rn(w, s)), z)));
}

__device__ __forceinline__ float awq_dequant(float q, float s, float z) {
    return __fmul_rn(__fsub_rn(q, z), s);
}

__device__ __forceinline__ long long warp_id() {
    return ((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5;
}

__device__ __forceinline__ long long warp_count() {
    return ((long long) gridDim.x * blockDim.x) >> 5;
}

// The scale search's candidates, all R at once: out[r] = Q(W·diag(s_r))·diag(s_r)⁻¹ for s: [R, K],
// out: [R, N, K] (ScaleSearch.scaledQuantized). s == null: plain Q(W) (R must be 1).
extern "C" __global__ void awq_scaled_qdq(const float* W, const float* s, float* out, int R, int N, int K, int len) {
    const int G = K / len, lane = threadIdx.x & 31;
    const long long items = (long long) R * N * G;
    for (long long it = warp_id(); it < items; it += warp_count()) {
        const int g = (int) (it % G);
        const long long rn = it / G;
        const int n = (int) (rn % N), r = (int) (rn / N);
        const float* w = W + (long long) n * K + (long long) g * len;
        const float* sr = s ? s + (long long) r * K + (long long) g * len : 0;
        float* o = out + ((long long) r * N + n) * K + (long long) g * len;
        float mn = __int_as_float(0x7f800000), mx = -__int_as_float(0x7f800000);
        for (int j = lane; j < len; j += 32) {
            const float v = sr ? __fmul_rn(w[j], sr[j]) : w[j];
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        mn = warp_min(mn);
        mx = warp_max(mx);
        float sc, z;
        awq_params(mn, mx, sc, z);
        for (int j = lane; j < len; j += 32) {
            const float v = sr ? __fmul_rn(w[j], sr[j]) : w[j];
            const float d = awq_dequant(awq_code(v, sc, z), sc, z);
            o[j] = sr ? __fdiv_rn(d, sr[j]) : d;
        }
    }
}

// D[r·nk + i] = W[i] − D[r·nk + i] for r < R, i < nk: the weight errors ΔW of R candidates.
extern "C" __global__ void awq_sub(const float* W, float* D, long long nk, int R) {
    const long long n = nk * R;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        D[e] = __fsub_rn(W[e % nk], D[e]);
    }
}

// Block-wide sum of a double (blockDim a multiple of 32, at most 1024); the result in thread 0.
__device__ double block_sum(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = 0;
    if (threadIdx.x == 0) {
        for (int w = 0; w < (blockDim.x >> 5); w++) t += part[w];
    }
    __syncthreads();
    return t;
}

// out[r] += Σ_i (double) A[r·per + i] · B[r·per + i] for r = blockIdx.y: per candidate, tr(ΔW·G·ΔWᵀ)
// from P = ΔW·G (ScaleSearch.linearLoss). float × float is exact in double.
extern "C" __global__ void awq_dot(const float* A, const float* B, long long per, double* out) {
    const long long base = (long long) blockIdx.y * per;
    double acc = 0;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < per; e += (long long) gridDim.x * blockDim.x) {
        acc += (double) A[base + e] * (double) B[base + e];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(out + blockIdx.y, acc);
}

// out[0] += Σ_i ((double) a[i] − b[i])² (b == null: Σ a[i]²): a candidate's squared output error.
extern "C" __global__ void awq_sq_diff(const float* a, const float* b, long long n, double* out) {
    double acc = 0;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        const double d = b ? (double) a[e] - (double) b[e] : (double) a[e];
        acc += d * d;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(out, acc);
}

// acc[k] += Σ_m |x[m, k]| in double, x: [M, K]; blockIdx.y takes rows [y·rows, (y+1)·rows).
extern "C" __global__ void awq_col_abs_sum(const float* x, long long M, int K, int rows, double* acc) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) return;
    const long long m0 = (long long) blockIdx.y * rows;
    const long long m1 = m0 + rows < M ? m0 + rows : M;
    double s = 0;
    for (long long m = m0; m < m1; m++) s += (double) fabsf(x[m * K + k]);
    atomicAdd(acc + k, s);
}

// out[j, :] = x[first + j·stride, :] for j < count; x: [rows, K] (the clip search's sampled tokens).
extern "C" __global__ void awq_gather_rows(const float* x, int K, long long first, int stride, int count, float* out) {
    const long long n = (long long) count * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        const long long j = e / K, k = e - j * K;
        out[e] = x[(first + j * stride) * K + k];
    }
}

// X[t, k] = X[t, k] / s[k]; X: [T, K] (a consumer's sampled inputs after scaling, AwqApply.divideColumns).
extern "C" __global__ void awq_div_cols(float* X, const float* s, long long T, int K) {
    const long long n = T * K;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        X[e] = __fdiv_rn(X[e], s[e % K]);
    }
}

// The clip search's candidates, all S steps at once (ClipSearch): for step i, row n, group g,
//   m0 = max |W[n, g]|,  m_i = m0 · (float) (1 − i/grid),  out[i, n, g] = Q(clamp(W[n, g], −m_i, m_i))
// out: [S, N, K]; orgMax[n·G + g] = m0.
extern "C" __global__ void awq_clip_qdq(const float* W, float* out, float* orgMax, int S, int N, int K, int len,
                                        int grid) {
    const int G = K / len, lane = threadIdx.x & 31;
    const long long items = (long long) S * N * G;
    for (long long it = warp_id(); it < items; it += warp_count()) {
        const int g = (int) (it % G);
        const long long in = it / G;
        const int n = (int) (in % N), i = (int) (in / N);
        const float* w = W + (long long) n * K + (long long) g * len;
        float* o = out + ((long long) i * N + n) * K + (long long) g * len;
        float m0 = 0.f;
        for (int j = lane; j < len; j += 32) m0 = fmaxf(m0, fabsf(w[j]));
        m0 = warp_max(m0);
        if (i == 0 && lane == 0) orgMax[(long long) n * G + g] = m0;
        const float mv = __fmul_rn(m0, (float) (1.0 - (double) i / grid));
        float mn = __int_as_float(0x7f800000), mx = -__int_as_float(0x7f800000);
        for (int j = lane; j < len; j += 32) {
            const float v = fmaxf(-mv, fminf(mv, w[j]));
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        mn = warp_min(mn);
        mx = warp_max(mx);
        float sc, z;
        awq_params(mn, mx, sc, z);
        for (int j = lane; j < len; j += 32) {
            const float v = fmaxf(-mv, fminf(mv, w[j]));
            o[j] = awq_dequant(awq_code(v, sc, z), sc, z);
        }
    }
}

// The clip search's choice for groups g0 .. g0+Gc−1, one thread per (group, row n):
//   err_i = Σ_t (cur[gl][t, i·N + n] − org[gl][t, n])² / Ts   (cur: [Gc][Ts, S·N], org: [Gc][Ts, N])
// best = the first i with the smallest err_i; maxVal = orgMax · (float) (1 − best/grid).
// Outputs at [n·G + g]: steps, maxVal, err0 (no clipping), errBest.
extern "C" __global__ void awq_clip_best(const float* cur, const float* org, const float* orgMax, int Ts, int S, int N,
                                         int G, int g0, int Gc, int grid, int* steps, float* maxVal, double* err0,
                                         double* errBest) {
    const long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x;
    if (e >= (long long) Gc * N) return;
    const int gl = (int) (e / N), n = (int) (e - (long long) gl * N), g = g0 + gl;
    const long long SN = (long long) S * N;
    const float* c = cur + (long long) gl * Ts * SN;
    const float* r = org + (long long) gl * Ts * N;
    int best = 0;
    double bestErr = __longlong_as_double(0x7ff0000000000000LL), e0 = 0;
    for (int i = 0; i < S; i++) {
        double acc = 0;
        for (int t = 0; t < Ts; t++) {
            const double d = (double) c[t * SN + (long long) i * N + n] - (double) r[(long long) t * N + n];
            acc += d * d;
        }
        acc /= Ts;
        if (i == 0) e0 = acc;
        if (acc < bestErr) {
            bestErr = acc;
            best = i;
        }
    }
    const long long at = (long long) n * G + g;
    steps[at] = best;
    maxVal[at] = __fmul_rn(orgMax[at], (float) (1.0 - (double) best / grid));
    err0[at] = e0;
    errBest[at] = bestErr;
}

// Round to nearest with zero points (AwqQuantizer.quantize) of W clamped per (row n, group g) to
// [−maxVal[n·G + g], maxVal[n·G + g]] (maxVal == null: no clamp). W is not changed.
// codes: [N, K] bytes; scales, zeros: [G, N]; deq (when not null): [N, K], (q − z)·s.
extern "C" __global__ void awq_quantize(const float* W, const float* maxVal, unsigned char* codes, float* scales,
                                        int* zeros, float* deq, int N, int K, int len) {
    const int G = K / len, lane = threadIdx.x & 31;
    const long long items = (long long) N * G;
    for (long long it = warp_id(); it < items; it += warp_count()) {
        const int g = (int) (it % G), n = (int) (it / G);
        const long long base = (long long) n * K + (long long) g * len;
        const float m = maxVal ? maxVal[it] : 0.f;
        float mn = __int_as_float(0x7f800000), mx = -__int_as_float(0x7f800000);
        for (int j = lane; j < len; j += 32) {
            const float v = maxVal ? fmaxf(-m, fminf(m, W[base + j])) : W[base + j];
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        mn = warp_min(mn);
        mx = warp_max(mx);
        float sc, z;
        awq_params(mn, mx, sc, z);
        if (lane == 0) {
            scales[(long long) g * N + n] = sc;
            zeros[(long long) g * N + n] = (int) z;
        }
        for (int j = lane; j < len; j += 32) {
            const float v = maxVal ? fmaxf(-m, fminf(m, W[base + j])) : W[base + j];
            const float q = awq_code(v, sc, z);
            codes[base + j] = (unsigned char) (int) q;
            if (deq) deq[base + j] = awq_dequant(q, sc, z);
        }
    }
}
