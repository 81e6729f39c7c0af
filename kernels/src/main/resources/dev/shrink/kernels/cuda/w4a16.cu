// W4A16 GEMV on packed GPTQ weights (FORMATS.md, "GPTQ"): y[N] = x[K] · dequant(W)ᵀ for one token,
// w[k, n] = scale[g, n] · (q[k, n] − z[g, n]), g = k / group (no act-order permutation).
//   qweight: int32 [K/8, N], input row 8r+j of column n in bits 4j..4j+3 of qweight[r][n]
//   qzeros:  int32 [G, N/8], column 8c+j's zero in bits 4j.. of qzeros[g][c]; stored z − 1 in the
//            "gptq" (v1) format (zeroOffset 1), z in "gptq_v2" (zeroOffset 0)
//   scales:  fp16 [G, N];  x: fp16 [K];  y: float32 [N].
// Memory-bound by design: every weight byte is read once, 16 bytes (4 columns × 8 rows of codes)
// per load, each warp reading 512 contiguous bytes of a qweight row (DRAM pages stay open), and
// the first loads issued before anything else so that DRAM latency overlaps the block's set-up.
// The arithmetic stays off the slow conversion units: a code q becomes a float as (2^23 + q) − 2^23,
// its nibble moved into the mantissa of 2^23 by one byte permute, and x is converted from fp16 once
// per block into shared memory, with the Σx of every 32 inputs.
// Grid (column blocks, K slices): a block of 256 threads takes 256 columns (64 threads × 4) of one
// slice of K, split over 4 runs of "steps" (4 qweight rows, 32 inputs: a step never straddles a
// group, groups being multiples of 32 inputs). A run's dot products become y += s·(Σ x·q − z·Σx) at
// each group boundary (a group cut by a slice is added in parts). The 4 runs are added in shared
// memory; each slice writes its partial sums to a workspace [slices, N], and the last slice block
// of a column block to finish (a ticket counter, reset for the next call) adds them in slice order
// and writes y: one kernel, no atomics on y, no zeroing, the same result every run.
// Self-contained: fp16 through PTX, no headers.

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

#define GEMV_COLS 256   // columns per block: 64 threads × 4
#define GEMV_RUNS 4     // runs per block (blockDim = 64 × 4)
#define MAGIC 8388608.f   // 2^23: __uint_as_float(0x4B000000 | q) == 2^23 + q for q < 2^23

// d + Σ_j x[j] · q_j over the 8 codes of word w (code j in bits 4j..4j+3); xa, xb: x[0..3], x[4..7].
__device__ __forceinline__ float dot8(float d, unsigned int w, float4 xa, float4 xb) {
    const unsigned int lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu; // codes 0,2,4,6 and 1,3,5,7
    d = fmaf(xa.x, __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7440)) - MAGIC, d);
    d = fmaf(xa.y, __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7440)) - MAGIC, d);
    d = fmaf(xa.z, __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7441)) - MAGIC, d);
    d = fmaf(xa.w, __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7441)) - MAGIC, d);
    d = fmaf(xb.x, __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7442)) - MAGIC, d);
    d = fmaf(xb.y, __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7442)) - MAGIC, d);
    d = fmaf(xb.z, __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7443)) - MAGIC, d);
    d = fmaf(xb.w, __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7443)) - MAGIC, d);
    return d;
}

// One run's state: the dot products and Σx of the current group's steps so far, and the group.
struct Run {
    float d[4];
    float sx;
    int g;
};

// y4 += s · (d − z · Σx) for group run.g of columns n0..n0+3; the sums reset.
__device__ __forceinline__ void flush(float* y4, Run& run, const int* qzeros, const unsigned short* scales, int n0,
                                      int N, int zeroOffset) {
    const unsigned int zw = (unsigned int) __ldg(qzeros + (long long) run.g * (N / 8) + n0 / 8);
    const int sh = 4 * (n0 & 7);
    const uint2 sw = __ldg(reinterpret_cast<const uint2*>(scales + (long long) run.g * N + n0));
    const unsigned short s4[4] = {(unsigned short) sw.x, (unsigned short) (sw.x >> 16), (unsigned short) sw.y,
                                  (unsigned short) (sw.y >> 16)};
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const float z = (float) ((int) ((zw >> (sh + 4 * c)) & 15) + zeroOffset);
        y4[c] += h2f(s4[c]) * (run.d[c] - z * run.sx);
        run.d[c] = 0.f;
    }
    run.sx = 0.f;
}

// Adds step st (qweight rows 4st..4st+3, codes q[0..3]) to the run, flushing first when it starts a new group.
__device__ __forceinline__ void step(float* y4, Run& run, int st, const int4* q, const float4* xq, const float* ssum,
                                     int rowsPerGroup, const int* qzeros, const unsigned short* scales, int n0, int N,
                                     int zeroOffset) {
    const int r = st * 4, g = r / rowsPerGroup;
    if (g != run.g) {
        flush(y4, run, qzeros, scales, n0, N, zeroOffset);
        run.g = g;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float4 xa = xq[2 * (r + i)], xb = xq[2 * (r + i) + 1];
        run.d[0] = dot8(run.d[0], (unsigned int) q[i].x, xa, xb);
        run.d[1] = dot8(run.d[1], (unsigned int) q[i].y, xa, xb);
        run.d[2] = dot8(run.d[2], (unsigned int) q[i].z, xa, xb);
        run.d[3] = dot8(run.d[3], (unsigned int) q[i].w, xa, xb);
    }
    run.sx += ssum[st];
}

// Grid: (ceil(N / 256), slices) blocks of 256 threads. Dynamic shared memory: (32·ceil(steps/slices) + ceil(steps/slices)
// + 4 × 256) floats. partial: [slices, N] floats; tickets: [ceil(N / 256)] ints, zero before the first call.
extern "C" __global__ void __launch_bounds__(256)
w4a16_gemv(const int* __restrict__ qweight, const int* __restrict__ qzeros, const unsigned short* __restrict__ scales,
           const unsigned short* __restrict__ x, float* __restrict__ y, int K, int N, int group, int zeroOffset,
           float* partial, int* tickets) {
    extern __shared__ float sm[];
    __shared__ int isLast;
    const int steps = K / 32, rowsPerGroup = group / 8, slices = gridDim.y, slice = blockIdx.y;
    const int a = (int) ((long long) steps * slice / slices), b = (int) ((long long) steps * (slice + 1) / slices);
    const int span = (steps + slices - 1) / slices;            // steps of a slice at most
    float* xs = sm;                          // [32·span] x of this slice's inputs, as float
    float* ssum = sm + 32 * span;            // [span] Σx of each step
    float* red = ssum + span;                // [4 runs, 256 columns]
    const int cg = threadIdx.x & 63, r4 = threadIdx.x >> 6;
    const int n0 = blockIdx.x * GEMV_COLS + cg * 4;
    const int s0 = a + (int) ((long long) (b - a) * r4 / GEMV_RUNS), s1 = a + (int) ((long long) (b - a) * (r4 + 1) / GEMV_RUNS);
    const bool live = n0 < N;

    // the run's first two steps: loads in flight while x is prepared
    int4 pre[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int st = s0 + (i >> 2);
        pre[i] = live && st < s1 ? __ldg(reinterpret_cast<const int4*>(qweight + (long long) (st * 4 + (i & 3)) * N + n0))
                                 : make_int4(0, 0, 0, 0);
    }
    const unsigned int* x2 = reinterpret_cast<const unsigned int*>(x) + a * 16;
    for (int k = threadIdx.x; k < (b - a) * 16; k += blockDim.x) {
        const unsigned int h = __ldg(x2 + k);
        xs[2 * k] = h2f((unsigned short) h);
        xs[2 * k + 1] = h2f((unsigned short) (h >> 16));
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int st = warp; st < b - a; st += blockDim.x >> 5) {
        float v = xs[st * 32 + lane];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) ssum[st] = v;
    }
    __syncthreads();

    float y4[4] = {0.f, 0.f, 0.f, 0.f};
    if (live && s0 < s1) {
        const float4* xq = reinterpret_cast<const float4*>(xs) - 8 * a;  // indexed by absolute qweight row
        const float* sq = ssum - a;                                      // indexed by absolute step
        Run run = {{0.f, 0.f, 0.f, 0.f}, 0.f, s0 * 4 / rowsPerGroup};
        step(y4, run, s0, pre, xq, sq, rowsPerGroup, qzeros, scales, n0, N, zeroOffset);
        if (s0 + 1 < s1) step(y4, run, s0 + 1, pre + 4, xq, sq, rowsPerGroup, qzeros, scales, n0, N, zeroOffset);
#pragma unroll 2
        for (int st = s0 + 2; st < s1; st++) {
            const long long base = (long long) st * 4 * N + n0;
            int4 q[4];
#pragma unroll
            for (int i = 0; i < 4; i++) q[i] = __ldg(reinterpret_cast<const int4*>(qweight + base + i * (long long) N));
            step(y4, run, st, q, xq, sq, rowsPerGroup, qzeros, scales, n0, N, zeroOffset);
        }
        flush(y4, run, qzeros, scales, n0, N, zeroOffset);
    }
    float* rw = red + r4 * GEMV_COLS + cg * 4;
    rw[0] = y4[0];
    rw[1] = y4[1];
    rw[2] = y4[2];
    rw[3] = y4[3];
    __syncthreads();
    const int n = blockIdx.x * GEMV_COLS + threadIdx.x;    // one column per thread from here
    if (n < N) {
        float v = 0.f;
        for (int w = 0; w < GEMV_RUNS; w++) v += red[w * GEMV_COLS + threadIdx.x];
        if (slices == 1) {
            y[n] = v;
            return;
        }
        partial[(long long) slice * N + n] = v;
    }
    if (slices == 1) return;
    __threadfence();                         // the partial sums are visible before the ticket is taken
    __syncthreads();
    if (threadIdx.x == 0) isLast = atomicAdd(tickets + blockIdx.x, 1) == slices - 1;
    __syncthreads();
    if (isLast) {
        if (n < N) {
            float v = 0.f;
            for (int sl = 0; sl < slices; sl++) v += __ldcg(partial + (long long) sl * N + n);
            y[n] = v;
        }
        if (threadIdx.x == 0) tickets[blockIdx.x] = 0;    // ready for the next call on the stream
    }
}
