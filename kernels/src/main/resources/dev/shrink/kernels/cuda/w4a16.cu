// W4A16 GEMV on packed GPTQ weights (FORMATS.md, "GPTQ"): y[N] = x[K] · dequant(W)ᵀ for one token,
// w[k, n] = scale[g, n] · (q[k, n] − z[g, n]), g = k / group (no act-order permutation).
//   qweight: int32 [K/8, N], input row 8r+j of column n in bits 4j..4j+3 of qweight[r][n]
//   qzeros:  int32 [G, N/8], column 8c+j's zero in bits 4j.. of qzeros[g][c]; stored z − 1 in the
//            "gptq" (v1) format (zeroOffset 1), z in "gptq_v2" (zeroOffset 0)
//   scales:  fp16 [G, N];  x: fp16 [K] (16-byte aligned);  y: float32 [N].
// Memory-bound: every weight byte is read once, 16 bytes (4 columns × 8 rows of codes) per load.
// A block of 256 threads takes 32 columns: 8 threads across them (4 columns each: 128 contiguous
// bytes of a qweight row) × 32 runs, each over a contiguous range of qweight rows in steps of 4
// rows (a step never straddles a group: groups are multiples of 32 inputs). Each step issues its
// four 16-byte weight loads and the matching 64 bytes of x (fp16, from L1) before any arithmetic,
// two steps unrolled, so that enough bytes are in flight to cover DRAM latency. A run's partial
// sums y += s · (Σ x·q − z · Σ x) are flushed at each group boundary; the 32 runs are added in
// shared memory and y written once (no atomics, no zeroing). Self-contained: fp16 through PTX.

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

#define GEMV_COLS 32
#define GEMV_RUNS 32

struct Acc {
    float d0, d1, d2, d3, sx;
};

// Adds rows' 8 inputs × 4 columns of codes to the running dot products.
__device__ __forceinline__ void dot8(Acc& a, int4 q, int4 xh) {
    const unsigned int xw[4] = {(unsigned int) xh.x, (unsigned int) xh.y, (unsigned int) xh.z, (unsigned int) xh.w};
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const float xv = h2f((unsigned short) (xw[j >> 1] >> (16 * (j & 1))));
        a.sx += xv;
        a.d0 = fmaf(xv, (float) ((q.x >> (4 * j)) & 15), a.d0);
        a.d1 = fmaf(xv, (float) ((q.y >> (4 * j)) & 15), a.d1);
        a.d2 = fmaf(xv, (float) ((q.z >> (4 * j)) & 15), a.d2);
        a.d3 = fmaf(xv, (float) ((q.w >> (4 * j)) & 15), a.d3);
    }
}

// y4 += s · (d − z · Σx) for group g of columns n0..n0+3, and the dot products reset.
__device__ __forceinline__ void flush(float* y4, Acc& a, const int* qzeros, const unsigned short* scales, int g, int n0,
                                      int N, int zeroOffset) {
    const unsigned int zw = (unsigned int) __ldg(qzeros + (long long) g * (N / 8) + n0 / 8);
    const int sh = 4 * (n0 & 7);
    const uint2 sw = __ldg(reinterpret_cast<const uint2*>(scales + (long long) g * N + n0));
    y4[0] += h2f((unsigned short) sw.x) * (a.d0 - (float) ((int) ((zw >> sh) & 15) + zeroOffset) * a.sx);
    y4[1] += h2f((unsigned short) (sw.x >> 16)) * (a.d1 - (float) ((int) ((zw >> (sh + 4)) & 15) + zeroOffset) * a.sx);
    y4[2] += h2f((unsigned short) sw.y) * (a.d2 - (float) ((int) ((zw >> (sh + 8)) & 15) + zeroOffset) * a.sx);
    y4[3] += h2f((unsigned short) (sw.y >> 16)) * (a.d3 - (float) ((int) ((zw >> (sh + 12)) & 15) + zeroOffset) * a.sx);
    a.d0 = a.d1 = a.d2 = a.d3 = a.sx = 0.f;
}

// Grid: ceil(N / 32) blocks of 256 threads; no dynamic shared memory.
extern "C" __global__ void __launch_bounds__(256)
w4a16_gemv(const int* __restrict__ qweight, const int* __restrict__ qzeros, const unsigned short* __restrict__ scales,
           const unsigned short* __restrict__ x, float* __restrict__ y, int K, int N, int group, int zeroOffset) {
    __shared__ float red[GEMV_RUNS * GEMV_COLS];
    const int cg = threadIdx.x & 7, run = threadIdx.x >> 3;
    const int n0 = blockIdx.x * GEMV_COLS + cg * 4;
    const int steps = K / 32, rowsPerGroup = group / 8;            // steps of 4 qweight rows (32 inputs)
    const int s0 = (int) ((long long) steps * run / GEMV_RUNS), s1 = (int) ((long long) steps * (run + 1) / GEMV_RUNS);
    float y4[4] = {0.f, 0.f, 0.f, 0.f};
    if (n0 < N && s0 < s1) {
        const int4* xq = reinterpret_cast<const int4*>(x);          // 8 inputs per int4
        Acc a = {0.f, 0.f, 0.f, 0.f, 0.f};
        int g = s0 * 4 / rowsPerGroup;
#pragma unroll 2
        for (int st = s0; st < s1; st++) {
            const int r = st * 4;
            const long long base = (long long) r * N + n0;
            const int4 q0 = __ldg(reinterpret_cast<const int4*>(qweight + base));
            const int4 q1 = __ldg(reinterpret_cast<const int4*>(qweight + base + N));
            const int4 q2 = __ldg(reinterpret_cast<const int4*>(qweight + base + 2 * (long long) N));
            const int4 q3 = __ldg(reinterpret_cast<const int4*>(qweight + base + 3 * (long long) N));
            const int4 x0 = __ldg(xq + r), x1 = __ldg(xq + r + 1), x2 = __ldg(xq + r + 2), x3 = __ldg(xq + r + 3);
            const int gs = r / rowsPerGroup;
            if (gs != g) {
                flush(y4, a, qzeros, scales, g, n0, N, zeroOffset);
                g = gs;
            }
            dot8(a, q0, x0);
            dot8(a, q1, x1);
            dot8(a, q2, x2);
            dot8(a, q3, x3);
        }
        flush(y4, a, qzeros, scales, g, n0, N, zeroOffset);
    }
    float* rw = red + run * GEMV_COLS + cg * 4;
    rw[0] = y4[0];
    rw[1] = y4[1];
    rw[2] = y4[2];
    rw[3] = y4[3];
    __syncthreads();
    if (threadIdx.x < GEMV_COLS) {
        const int n = blockIdx.x * GEMV_COLS + threadIdx.x;
        float s = 0.f;
        for (int w = 0; w < GEMV_RUNS; w++) s += red[w * GEMV_COLS + threadIdx.x];
        if (n < N) y[n] = s;
    }
}
