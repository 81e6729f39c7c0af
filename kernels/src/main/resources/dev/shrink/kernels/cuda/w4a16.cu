// W4A16 GEMV on packed GPTQ weights (FORMATS.md, "GPTQ"): y[N] = x[K] · dequant(W)ᵀ for one token,
// w[k, n] = scale[g, n] · (q[k, n] − z[g, n]), g = k / group (no act-order permutation).
//   qweight: int32 [K/8, N], input row 8r+j of column n in bits 4j..4j+3 of qweight[r][n]
//   qzeros:  int32 [G, N/8], column 8c+j's zero in bits 4j.. of qzeros[g][c]; stored z − 1 in the
//            "gptq" (v1) format (zeroOffset 1), z in "gptq_v2" (zeroOffset 0)
//   scales:  fp16 [G, N];  x: fp16 [K];  y: float32 [N], accumulated with atomicAdd (zero it first).
// Memory-bound: every weight byte is read once, 16 bytes (4 columns × 8 rows of codes) per load.
// A block of 256 threads takes 32 columns: 8 threads across them (4 columns each: 128 contiguous
// bytes of a qweight row) × 32 thread rows, each over a contiguous run of K/8/32 qweight rows; a
// run's partial sums y += s · (Σ x·q − z · Σ x) are flushed at each group boundary, the 32 runs
// added in shared memory, y written once (no atomics, no zeroing). Self-contained: fp16 through
// PTX, no headers.

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

#define GEMV_COLS 32
#define GEMV_RUNS 32

// Grid: ceil(N / 32) blocks of 256 threads. Dynamic shared memory: (K + 32 × 32) floats.
extern "C" __global__ void __launch_bounds__(256)
w4a16_gemv(const int* __restrict__ qweight, const int* __restrict__ qzeros, const unsigned short* __restrict__ scales,
           const unsigned short* __restrict__ x, float* __restrict__ y, int K, int N, int group, int zeroOffset) {
    extern __shared__ float sm[];
    float* xs = sm;                 // [K]
    float* red = sm + K;            // [32 runs, 32 columns]
    for (int k = threadIdx.x; k < K; k += blockDim.x) xs[k] = h2f(x[k]);
    __syncthreads();
    const int cg = threadIdx.x & 7, run = threadIdx.x >> 3;
    const int n0 = blockIdx.x * GEMV_COLS + cg * 4;
    const int rows = K / 8, rowsPerGroup = group / 8;
    const int r0 = (int) ((long long) rows * run / GEMV_RUNS), r1 = (int) ((long long) rows * (run + 1) / GEMV_RUNS);
    float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
    if (n0 < N && r0 < r1) {
        int g = r0 / rowsPerGroup;
        float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f, sx = 0.f;
#pragma unroll 4
        for (int r = r0; r < r1; r++) {
            if (r / rowsPerGroup != g) { // flush the group that ended
                const unsigned int zw = (unsigned int) __ldg(qzeros + (long long) g * (N / 8) + n0 / 8);
                const int sh = 4 * (n0 & 7);
                const unsigned short* sg = scales + (long long) g * N + n0;
                acc0 += h2f(__ldg(sg + 0)) * (d0 - (float) ((int) ((zw >> sh) & 15) + zeroOffset) * sx);
                acc1 += h2f(__ldg(sg + 1)) * (d1 - (float) ((int) ((zw >> (sh + 4)) & 15) + zeroOffset) * sx);
                acc2 += h2f(__ldg(sg + 2)) * (d2 - (float) ((int) ((zw >> (sh + 8)) & 15) + zeroOffset) * sx);
                acc3 += h2f(__ldg(sg + 3)) * (d3 - (float) ((int) ((zw >> (sh + 12)) & 15) + zeroOffset) * sx);
                d0 = d1 = d2 = d3 = sx = 0.f;
                g = r / rowsPerGroup;
            }
            const int4 q = __ldg(reinterpret_cast<const int4*>(qweight + (long long) r * N + n0));
            const float* xr = xs + r * 8;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float xv = xr[j];
                sx += xv;
                d0 = fmaf(xv, (float) ((q.x >> (4 * j)) & 15), d0);
                d1 = fmaf(xv, (float) ((q.y >> (4 * j)) & 15), d1);
                d2 = fmaf(xv, (float) ((q.z >> (4 * j)) & 15), d2);
                d3 = fmaf(xv, (float) ((q.w >> (4 * j)) & 15), d3);
            }
        }
        const unsigned int zw = (unsigned int) __ldg(qzeros + (long long) g * (N / 8) + n0 / 8);
        const int sh = 4 * (n0 & 7);
        const unsigned short* sg = scales + (long long) g * N + n0;
        acc0 += h2f(__ldg(sg + 0)) * (d0 - (float) ((int) ((zw >> sh) & 15) + zeroOffset) * sx);
        acc1 += h2f(__ldg(sg + 1)) * (d1 - (float) ((int) ((zw >> (sh + 4)) & 15) + zeroOffset) * sx);
        acc2 += h2f(__ldg(sg + 2)) * (d2 - (float) ((int) ((zw >> (sh + 8)) & 15) + zeroOffset) * sx);
        acc3 += h2f(__ldg(sg + 3)) * (d3 - (float) ((int) ((zw >> (sh + 12)) & 15) + zeroOffset) * sx);
    }
    float* rw = red + run * GEMV_COLS + cg * 4;
    rw[0] = acc0;
    rw[1] = acc1;
    rw[2] = acc2;
    rw[3] = acc3;
    __syncthreads();
    if (threadIdx.x < GEMV_COLS) {
        const int n = blockIdx.x * GEMV_COLS + threadIdx.x;
        float s = 0.f;
        for (int w = 0; w < GEMV_RUNS; w++) s += red[w * GEMV_COLS + threadIdx.x];
        if (n < N) y[n] = s;
    }
}
