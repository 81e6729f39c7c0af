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

// ------------------------------------------------------------------------------------------------
// w4a16_gemv_tc: the same product on the tensor cores, in one launch.
//
// What limits (measured on an H100 with W4a16Bench: weights rotated over 1 GiB, launches in a CUDA
// graph): the kernel above and a probe doing this kernel's loads with no arithmetic at all read the
// 7B shapes at the same 1.0-1.7 TB/s, while a plain linear read of the same bytes reaches 2.0-2.8
// TB/s and a device-to-device copy 2.4-2.9 TB/s (read + write). So neither the arithmetic nor L2 was
// the limit, but how the weights are read: a warp step of 4 qweight rows × 128 bytes, the rows N·4
// bytes apart, scattered over the matrix by thousands of warps, which the DRAM serves slowly. The
// tiled layout (w4a16_tile below, once at load) makes each warp's weights one contiguous run: the
// load-only probe then reaches 81-90% of the copy's rate on the shapes with N ≥ 11008, this kernel
// 66-79% (4096 × 11008: 60%, 70% with K split over blocks; its load-only probe gets 54%: not understood).
// For 4096 × 4096 (8.7 MB, ~3 us of DRAM time) the fixed cost of a launch dominates: a linear read
// takes 4.3 us, a copy 7.4 us, this kernel 7.2-7.9 us.
// The arithmetic is kept cheap so that it stays hidden at H200 bandwidth too (~1.2 issued instructions
// per code against ~3.4 for the FMA path above): nibbles become fp16 integers by mask-or into the
// mantissa of 1024 (0x6400) and one f16x2 subtract (or fma by 1/16 for the high nibble of a byte),
// exactly; mma.m16n8k16 multiplies them by x (fp16, exact products) with float32 sums; the scale and
// zero point are applied per group in float32 on the sums, y += s·(Σ x·q − z·Σx), as above: no
// rounding of dequantised weights to fp16, so the result agrees with the CPU reference to float rounding.
//
// Block: 32·CW output columns, a thread's 16-byte loads CW per step (a step = 4 qweight rows = 32
// inputs, never straddling a group), its warps splitting the block's steps into contiguous runs; each
// warp keeps U steps of loads in flight (a ring of U shared-memory slots filled by cp.async, refilled
// as they are used); the warps' sums are added in shared memory in warp order (deterministic) and
// written once to y (or added to it: accumulate = 1, for a residual stream), or, with K split over
// KS blocks, added into y atomically. x, the tile's scales and zero words and every step's Σx are
// staged in shared memory while the first U steps' weights are in flight; x is put in the
// B-fragment order as it is read.
//
// mma.m16n8k16 fragments (PTX ISA), lane = 4·g + t: A row g ← column 4g+2p, row g+8 ← column
// 4g+2p+1 (p = 0, 1: two products per code half); A's k slots 2t, 2t+1 | 2t+8, 2t+9 ← codes (0, 4)
// | (1, 5) (a = 0) or (2, 6) | (3, 7) (a = 1) of qweight row 4·step + t; B column n ← the same x
// for every n (so C's columns repeat: c0 is column 4g+2p, c2 column 4g+2p+1). The order of the k
// slots is free since the sum runs over all of them, as long as A and B agree, which the byte
// permute of x guarantees: x[8r..8r+7] is read as the halves (0,4),(1,5),(2,6),(3,7).

__device__ __forceinline__ unsigned int hsub2(unsigned int a, unsigned int b) {
    unsigned int r;
    asm("sub.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

__device__ __forceinline__ unsigned int hfma2(unsigned int a, unsigned int b, unsigned int c) {
    unsigned int r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

__device__ __forceinline__ void mma16816(float* c, unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3,
                                         unsigned int b0, unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#define H1024 0x64006400u   // fp16 pair (1024, 1024)
#define HSIXTEENTH 0x2C002C00u  // (1/16, 1/16)
#define HM64 0xD400D400u    // (-64, -64)

// x[8r..8r+7] (one uint4) → the B fragments of a step: halves (0,4), (1,5), (2,6), (3,7)
__device__ __forceinline__ uint4 xfrag(uint4 xr) {
    uint4 xv;
    xv.x = __byte_perm(xr.x, xr.z, 0x5410);
    xv.y = __byte_perm(xr.x, xr.z, 0x7632);
    xv.z = __byte_perm(xr.y, xr.w, 0x5410);
    xv.w = __byte_perm(xr.y, xr.w, 0x7632);
    return xv;
}

// acc0 += codes of columns 0,1 of q (one qweight row per t) · x; acc1 the same for columns 2,3.
__device__ __forceinline__ void tc_step(float* acc0, float* acc1, int4 q, uint4 xv) {
    const unsigned int w[4] = {(unsigned int) q.x, (unsigned int) q.y, (unsigned int) q.z, (unsigned int) q.w};
    unsigned int c04[4], c15[4], c26[4], c37[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const unsigned int a = w[j], b = w[j] >> 8;
        c04[j] = hsub2((a & 0x000F000Fu) | H1024, H1024);                 // codes 0, 4
        c15[j] = hfma2((a & 0x00F000F0u) | H1024, HSIXTEENTH, HM64);      // (1024 + 16q)/16 − 64: codes 1, 5
        c26[j] = hsub2((b & 0x000F000Fu) | H1024, H1024);                 // codes 2, 6
        c37[j] = hfma2((b & 0x00F000F0u) | H1024, HSIXTEENTH, HM64);      // codes 3, 7
    }
    mma16816(acc0, c04[0], c04[1], c15[0], c15[1], xv.x, xv.y);
    mma16816(acc0, c26[0], c26[1], c37[0], c37[1], xv.z, xv.w);
    mma16816(acc1, c04[2], c04[3], c15[2], c15[3], xv.x, xv.y);
    mma16816(acc1, c26[2], c26[3], c37[2], c37[3], xv.z, xv.w);
}

// Shared-memory address of a generic pointer into shared memory (for cp.async).
__device__ __forceinline__ unsigned int smem_addr(const void* p) {
    unsigned int a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// cp.async of 16 bytes global → shared, bypassing L1 (weights are read once); zero-filled when !in.
__device__ __forceinline__ void cp16(unsigned int dst, const void* src, bool in) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(in ? 16 : 0));
}

__device__ __forceinline__ void cp4(unsigned int dst, const void* src, bool in) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(in ? 4 : 0));
}

// 16 bytes from global memory through L2 (x: just written by the previous kernel), as asm volatile with a
// memory clobber so that the compiler keeps it after griddep_wait (a plain or __ldg load of restrict const
// data could be hoisted above it).
__device__ __forceinline__ uint4 ld_cg16(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}

// Programmatic dependent launch (PTX ISA 7.8, sm_90): griddep_wait blocks until the grids this one depends
// on have completed and their memory is visible (at once when it was not launched programmatically);
// griddep_launch_dependents lets the next grid, launched with programmatic stream serialization, start
// once every block of this one has executed it or exited. Both are no-ops before sm_90 (no PDL there).
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void cp_commit() {
    asm volatile("cp.async.commit_group;");
}

template <int N>
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

// Grid: (ceil(N / (32·CW)), KS) blocks of 32·W threads (W warps): a block takes 32·CW columns
// (each thread CW int4s per step, 32 columns apart, so that a warp reads CW × 128 contiguous bytes
// of each of its 4 rows) and slice blockIdx.y of KS of the steps; its warps split the slice.
// With KS = 1 the block writes y (or adds to it: accumulate); with KS > 1 the slices add their sums
// into y with atomicAdd (accumulate semantics; the order of the KS additions varies run to run).
// Dynamic shared memory (bytes): 2·32·(b−a) (x of the slice) + 80·CW·Gs (scales, zero words of the
// slice's Gs groups) + 4·⌈b−a⌉₄ (Σx per step) + 128·CW·W (the warps' sums) + 512·CW·U·W (each warp's
// ring of U steps of weights), for a slice of steps [a, b) (W4a16Gemv.tcShared).
// Loads are cp.async copies into shared memory, one commit group per step, so that a warp keeps
// exactly U steps in flight and waits for the oldest only (cp.async.wait_group U−1): register
// prefetch rings were measured to serialise (the loads share the few scoreboards a warp has, so
// waiting for one waited for the newest too). Group 0 holds x and the tile's scales and zero words,
// issued before any weight so that they arrive first.
// pdl (W4a16Gemv.Pdl): 0 for a plain launch (as above); 1 or 2 for a programmatic dependent launch, where
// the block may start before the previous kernel has finished: group 0 then holds only the scales and zero
// words, and x is read with plain loads after griddep_wait, once the block's first U steps of weights
// (which no kernel writes) are in flight; y is written after it too. The block lets the next kernel start
// after its last weight loads (1) or right after its first ones (2). Measured on an H100 (W4a16Bench
// --pdl, README): with 2, 12288/11008/22016 x 4096 run 1-7% faster than plain launches did, 4096 x 11008
// a third slower; with 1, 4096 x 11008 ~7% faster; 4096 x 4096 slower with both.
// MATH = false: the same loads and waits with the arithmetic replaced by an XOR of the words (a
// bandwidth probe for W4a16Bench: what the access pattern alone achieves); y gets the XOR as a float.
template <int U, int CW, bool MATH>
__device__ __forceinline__ void gemv_tc(const int* __restrict__ qweight, const int* __restrict__ qzeros,
                                        const unsigned short* __restrict__ scales, const unsigned short* __restrict__ x,
                                        float* __restrict__ y, int K, int N, int group, int zeroOffset, int accumulate,
                                        int tiled, int pdl) {
    extern __shared__ __align__(16) unsigned char smraw[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * 32 * CW;
    const int S = K >> 5, spg = group >> 5;   // steps, steps per group
    const int KS = gridDim.y;
    const int a = (int) ((long long) S * blockIdx.y / KS), b = (int) ((long long) S * (blockIdx.y + 1) / KS);
    const int Sb = b - a;                     // this block's steps
    const int gA = a / spg, Gs = b > a ? (b - 1) / spg - gA + 1 : 0;   // its groups
    const int s0 = a + (int) ((long long) Sb * warp / W), s1 = a + (int) ((long long) Sb * (warp + 1) / W);
    uint4* xs = reinterpret_cast<uint4*>(smraw);                                        // [4·Sb] x of the slice
    unsigned short* sc = reinterpret_cast<unsigned short*>(smraw + 64 * Sb);          // [Gs][32·CW]
    unsigned int* zs = reinterpret_cast<unsigned int*>(smraw + 64 * Sb + 64 * CW * Gs);  // [Gs][4·CW]
    float* ss = reinterpret_cast<float*>(smraw + 64 * Sb + 80 * CW * Gs);             // [Sb]
    float* red = ss + ((Sb + 3) & ~3);                                                // [W][32·CW]
    uint4* ring = reinterpret_cast<uint4*>(red + 32 * CW * W) + warp * U * CW * 32 + lane;  // slot j, c: [32 (CW j + c)]

    // group 0: x of the slice (plain launches: x first, so that it arrives first), the tile's scales and zero
    // words of its groups (weights: never written by earlier kernels)
    const uint4* x16 = reinterpret_cast<const uint4*>(x) + 4 * a;
    if (!pdl) {
        for (int r = threadIdx.x; r < 4 * Sb; r += blockDim.x) cp16(smem_addr(xs + r), x16 + r, true);
    }
    for (int i = threadIdx.x; i < Gs * 4 * CW; i += blockDim.x) {
        const int gi = i / (4 * CW), c = i - gi * 4 * CW;      // 8 columns per chunk
        const bool in = n0 + 8 * c < N;
        const long long gg = gA + gi;
        cp16(smem_addr(reinterpret_cast<uint4*>(sc) + i), in ? scales + gg * N + n0 + 8 * c : scales, in);
        cp4(smem_addr(zs + i), in ? qzeros + gg * (N >> 3) + (n0 >> 3) + c : qzeros, in);
    }
    cp_commit();
    // groups 1..U: this warp's first U steps (thread: qweight row 4·step + t, columns n0 + 32c + 4g ..+3)
    bool live[CW];
    const int4* qp[CW];
#pragma unroll
    for (int c = 0; c < CW; c++) {
        const int col = n0 + 32 * c + 4 * g;
        live[c] = col < N;                    // N % 8 == 0: then all 4 columns of the int4 are < N
        qp[c] = tiled ? reinterpret_cast<const int4*>(qweight) + (long long) (live[c] ? blockIdx.x * CW + c : 0) * S * 32 + lane
                      : reinterpret_cast<const int4*>(qweight + (live[c] ? col : 0)) + t * (N >> 2);
    }
    // int4s from one step to the next: 4 rows of N/4 int4s, or one 512-byte step of a tile
    const long long stepStride = tiled ? 32 : (long long) N;
    const unsigned int ring0 = smem_addr(ring);
#pragma unroll
    for (int j = 0; j < U; j++) {
        if (s0 + j < s1) {
#pragma unroll
            for (int c = 0; c < CW; c++) cp16(ring0 + 512 * (CW * j + c), qp[c] + (s0 + j) * stepStride, live[c]);
        }
        cp_commit();
    }
    if (pdl) {
        if (pdl == 2) griddep_launch_dependents();
        // Everything above read only weights. x (and y, below) belong to the previous kernel on the stream:
        // launched programmatically, this block may be running before that kernel has finished, so wait for
        // it (its completion and its memory) here, then read x with plain loads, up to 4 in flight per thread.
        griddep_wait();
        for (int r0 = threadIdx.x; r0 < 4 * Sb; r0 += 4 * blockDim.x) {
            uint4 v[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int r = r0 + u * blockDim.x;
                v[u] = r < 4 * Sb ? ld_cg16(x16 + r) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int r = r0 + u * blockDim.x;
                if (r < 4 * Sb) xs[r] = v[u];
            }
        }
    }
    cp_wait<U>();                             // this thread's part of group 0 is in
    __syncthreads();                          // everyone's x and group 0 are in
    for (int st = s0; st < s1; st++) {        // Σx of this warp's steps (32 inputs each)
        float v = h2f(reinterpret_cast<const unsigned short*>(xs + 4 * (st - a))[lane]);
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) ss[st - a] = v;
    }
    __syncwarp();

    float acc[CW][2][4];
    float yv[CW][4];
#pragma unroll
    for (int c = 0; c < CW; c++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            acc[c][0][i] = 0.f;
            acc[c][1][i] = 0.f;
            yv[c][i] = 0.f;
        }
    unsigned int probe = 0;
    float sx = 0.f;
    int gcur = s0 / spg, next = (gcur + 1) * spg;    // the group being summed, the step that starts the next
    const int zsh = 16 * (g & 1);                     // a thread's 4 columns' nibbles in their zero word
    int slot = 0;
    for (int st = s0; st < s1; st++) {
        if (MATH && st == next) {             // flush group gcur: y += s·(Σ x·q − z·Σx)
#pragma unroll
            for (int c = 0; c < CW; c++) {
                const unsigned int zw = zs[(gcur - gA) * 4 * CW + 4 * c + (g >> 1)];
                const unsigned short* s4 = sc + (gcur - gA) * 32 * CW + 32 * c + 4 * g;
                const float d[4] = {acc[c][0][0], acc[c][0][2], acc[c][1][0], acc[c][1][2]};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const float z = (float) ((int) ((zw >> (zsh + 4 * i)) & 15u) + zeroOffset);
                    yv[c][i] += h2f(s4[i]) * (d[i] - z * sx);
                    acc[c][0][i] = 0.f;
                    acc[c][1][i] = 0.f;
                }
            }
            sx = 0.f;
            gcur++;
            next += spg;
        }
        cp_wait<U - 1>();                     // this step's group (the oldest pending) has landed
        if (MATH) {
            const uint4 xv = xfrag(xs[4 * (st - a) + t]);
#pragma unroll
            for (int c = 0; c < CW; c++) {
                const int4 q = *reinterpret_cast<const int4*>(ring + 32 * (CW * slot + c));
                tc_step(acc[c][0], acc[c][1], q, xv);  // consumes q before its slot is refilled below
            }
            sx += ss[st - a];
        } else {
#pragma unroll
            for (int c = 0; c < CW; c++) {
                const int4 q = *reinterpret_cast<const int4*>(ring + 32 * (CW * slot + c));
                probe ^= (unsigned int) (q.x ^ q.y ^ q.z ^ q.w);
            }
        }
        if (st + U < s1) {
#pragma unroll
            for (int c = 0; c < CW; c++) cp16(ring0 + 512 * (CW * slot + c), qp[c] + (st + U) * stepStride, live[c]);
        }
        cp_commit();
        slot = slot + 1 == U ? 0 : slot + 1;
    }
    if (pdl == 1) griddep_launch_dependents();   // every load of this block issued: the next kernel may start
    if (MATH && s0 < s1) {
#pragma unroll
        for (int c = 0; c < CW; c++) {
            const unsigned int zw = zs[(gcur - gA) * 4 * CW + 4 * c + (g >> 1)];
            const unsigned short* s4 = sc + (gcur - gA) * 32 * CW + 32 * c + 4 * g;
            const float d[4] = {acc[c][0][0], acc[c][0][2], acc[c][1][0], acc[c][1][2]};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float z = (float) ((int) ((zw >> (zsh + 4 * i)) & 15u) + zeroOffset);
                yv[c][i] += h2f(s4[i]) * (d[i] - z * sx);
            }
        }
    }
    if (!MATH) yv[0][0] = (float) probe;
    cp_wait<0>();                             // nothing in flight when the block ends
    if (t == 0) {
#pragma unroll
        for (int c = 0; c < CW; c++)
            *reinterpret_cast<float4*>(red + warp * 32 * CW + 32 * c + 4 * g) =
                make_float4(yv[c][0], yv[c][1], yv[c][2], yv[c][3]);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 32 * CW; i += blockDim.x) {
        const int n = n0 + i;
        if (n < N) {
            float v = 0.f;
            for (int w = 0; w < W; w++) v += red[w * 32 * CW + i];
            if (KS > 1) atomicAdd(y + n, v);
            else y[n] = accumulate ? y[n] + v : v;
        }
    }
}

#define TC_KERNEL(NAME, U, CW, MATH)                                                                          \
    extern "C" __global__ void __launch_bounds__(512)                                                           \
    NAME(const int* __restrict__ qweight, const int* __restrict__ qzeros, const unsigned short* __restrict__ scales, \
         const unsigned short* __restrict__ x, float* __restrict__ y, int K, int N, int group, int zeroOffset,     \
         int accumulate, int tiled, int pdl) {                                                                 \
        gemv_tc<U, CW, MATH>(qweight, qzeros, scales, x, y, K, N, group, zeroOffset, accumulate, tiled, pdl);   \
    }

TC_KERNEL(w4a16_gemv_tc_u8_c1, 8, 1, true)
TC_KERNEL(w4a16_gemv_tc_u6_c1, 6, 1, true)
TC_KERNEL(w4a16_gemv_tc_u4_c1, 4, 1, true)
TC_KERNEL(w4a16_gemv_tc_u4_c2, 4, 2, true)
TC_KERNEL(w4a16_gemv_tc_u2_c4, 2, 4, true)
TC_KERNEL(w4a16_gemv_tc_u4_c4, 4, 4, true)
TC_KERNEL(w4a16_probe_u4_c1, 4, 1, false)
TC_KERNEL(w4a16_probe_u4_c4, 4, 4, false)

// ------------------------------------------------------------------------------------------------
// w4a16_gemv_split: the default for the tiled layout when y accumulates (y += x · dequant(W)ᵀ; for
// y = ..., W4a16Gemv zeroes y first). What limited the kernels above was not DRAM but instruction
// issue: Nsight Compute on an H100 counted ~187 warp instructions per 1024 weights for
// w4a16_gemv_tc_u4_c1 at 4096 x 4096 (3.06 M in all, issue rate 0.55 per cycle per scheduler), while
// the same loads without the arithmetic ran at 87% of a copy's rate. This kernel spends ~45 per 1024:
//   - a warp owns one 32-column tile and one slice of P steps (P·32 inputs) and issues all its P weight
//     loads (16 bytes per lane per step, one contiguous P·512-byte run of the tiled layout) and its
//     groups' scales and zero words at once, into registers: no ring, no waits but one;
//   - the zero point is folded into the conversion: a nibble q becomes (q | 0x6400) − (0x6400 + z) or
//     fma((16q | 0x6400), 1/16, −(64 + z)) in f16x2, q − z exactly (an integer in [−16, 15]), so each
//     group needs only y += s · Σ x·(q − z), with no Σx;
//   - x is staged once per block in shared memory already permuted into the mma B fragments (one
//     LDS.128 per step), and the block's warps take neighbouring tiles of the same slice;
//   - the group size is a template parameter (SPG steps of 32 inputs; 0: one group spans each whole
//     slice), so that no index needs a division;
//   - the slices add their sums into y with red.global.add.v4.f32: many small independent warps in
//     flight and no reduction step, at the price of an order of additions that varies run to run.
// Products x·(q − z) are exact in the mma (fp16 × fp16 into float32), sums float32, as above.
// Grid (ceil(tiles / warps), ceil(S / P)), warps·32 threads (≤ 128: launch bounds of 256 cost 5% at 4096 x 4096).
// Programmatic launches: the weight, scale and zero loads are issued before griddepcontrol.wait, x is read and
// y touched after it.
__device__ __forceinline__ int4 ld_stream16(const int4* p) {
    int4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.s32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The scales and zero words, as volatile asm so that they are issued with the weights (as __ldg, the compiler
// sank the scales' load below __syncthreads, next to its use; the time measured the same either way)
__device__ __forceinline__ uint2 ld_nc8(const void* p) {
    uint2 v;
    asm volatile("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

__device__ __forceinline__ unsigned ld_nc4(const void* p) {
    unsigned v;
    asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

// A group's constants for a thread's 4 columns: hz = (1024 + z) and hm = −(64 + z) as f16x2 pairs,
// s the scales as float (zero word zw, the thread's nibbles from bit zsh; scales sw, 4 fp16).
__device__ __forceinline__ void zgroup(unsigned zw, uint2 sw, int zsh, int zeroOffset, unsigned* hz, unsigned* hm,
                                       float* s) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const unsigned z = ((zw >> (zsh + 4 * j)) & 15u) + zeroOffset;
        hz[j] = (0x6400u + z) * 0x10001u;
        hm[j] = (0xD400u + 16u * z) * 0x10001u;
    }
    s[0] = h2f((unsigned short) sw.x);
    s[1] = h2f((unsigned short) (sw.x >> 16));
    s[2] = h2f((unsigned short) sw.y);
    s[3] = h2f((unsigned short) (sw.y >> 16));
}

// tc_step with the zero point folded in: acc0 += (q − z) · x for columns 0, 1 of the int4, acc1 for 2, 3.
__device__ __forceinline__ void tc_step_z(float* acc0, float* acc1, int4 q, uint4 xv, const unsigned* hz,
                                          const unsigned* hm) {
    const unsigned int w[4] = {(unsigned int) q.x, (unsigned int) q.y, (unsigned int) q.z, (unsigned int) q.w};
    unsigned int c04[4], c15[4], c26[4], c37[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const unsigned int a = w[j], b = w[j] >> 8;
        c04[j] = hsub2((a & 0x000F000Fu) | H1024, hz[j]);
        c15[j] = hfma2((a & 0x00F000F0u) | H1024, HSIXTEENTH, hm[j]);
        c26[j] = hsub2((b & 0x000F000Fu) | H1024, hz[j]);
        c37[j] = hfma2((b & 0x00F000F0u) | H1024, HSIXTEENTH, hm[j]);
    }
    mma16816(acc0, c04[0], c04[1], c15[0], c15[1], xv.x, xv.y);
    mma16816(acc0, c26[0], c26[1], c37[0], c37[1], xv.z, xv.w);
    mma16816(acc1, c04[2], c04[3], c15[2], c15[3], xv.x, xv.y);
    mma16816(acc1, c26[2], c26[3], c37[2], c37[3], xv.z, xv.w);
}

template <int P, int SPG>
__device__ __forceinline__ void gemv_split(const int4* __restrict__ qt, const unsigned* __restrict__ qzeros,
                                           const unsigned short* __restrict__ scales, const uint4* __restrict__ x16,
                                           float* __restrict__ y, int K, int N, int spg, int zeroOffset) {
    constexpr int GP = SPG > 0 ? P / SPG : 1;    // groups per slice
    __shared__ uint4 xs[4 * P];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int tiles = (N + 31) >> 5, mine = blockIdx.x * (blockDim.x >> 5) + warp, tile = min(mine, tiles - 1);
    const int S = K >> 5;
    const int s0 = blockIdx.y * P, ns = min(P, S - s0), g0 = SPG > 0 ? s0 / SPG : s0 / spg;
    const int4* qp = qt + ((long long) tile * S + s0) * 32 + lane;
    int4 q[P];
#pragma unroll
    for (int i = 0; i < P; i++) q[i] = i < ns ? ld_stream16(qp + i * 32) : make_int4(0, 0, 0, 0);
    const int col = tile * 32 + 4 * g;
    const bool live = mine < tiles && col < N;   // N % 8 == 0: then all 4 columns are < N
    // the scales and zero words of a column past N (last tile) are read from column N − 4 and never used:
    // an unguarded load (a guard on these loads cost 7% at 4096 x 11008)
    const int colL = min(col, N - 4);
    uint2 sw[GP];
    unsigned zw[GP];
    const unsigned short* sp = scales + (long long) g0 * N + colL;
    const unsigned* zp = qzeros + (long long) g0 * (N >> 3) + (colL >> 3);
#pragma unroll
    for (int j = 0; j < GP; j++) {
        const bool in = j * SPG < ns;
        sw[j] = in ? ld_nc8(sp + (long long) j * N) : make_uint2(0u, 0u);
        zw[j] = in ? ld_nc4(zp + (long long) j * (N >> 3)) : 0u;
    }
    // Launched programmatically, the block may run before the previous kernel has finished: it lets the next
    // kernel start (every weight load is issued), then waits for the previous one (x and y are its). Launched
    // plainly, both are no-ops; kept there too, since the kernel measured 2-3% faster with them than without
    // (H100, 4096 x 4096 and 4096 x 11008; not understood).
    griddep_launch_dependents();
    griddep_wait();
    // a short last slice: x of its missing steps is zero, so that their (0 − z)·x add nothing and the
    // steps below need no branch (a branch per step kept the compiler from interleaving them: +12-35%)
    if (threadIdx.x < 4 * P) {
        xs[threadIdx.x] = threadIdx.x < 4 * ns ? xfrag(ld_cg16(x16 + 4 * s0 + threadIdx.x)) : make_uint4(0u, 0u, 0u, 0u);
    }
    __syncthreads();
    const int zsh = 16 * (g & 1);
    float yv[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int j = 0; j < GP; j++) {
        unsigned hz[4], hm[4];
        float s[4];
        zgroup(zw[j], sw[j], zsh, zeroOffset, hz, hm, s);
        float acc0[4] = {0.f, 0.f, 0.f, 0.f}, acc1[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int i = j * (P / GP); i < (j + 1) * (P / GP); i++) tc_step_z(acc0, acc1, q[i], xs[4 * i + t], hz, hm);
        yv[0] += s[0] * acc0[0];
        yv[1] += s[1] * acc0[2];
        yv[2] += s[2] * acc1[0];
        yv[3] += s[3] * acc1[2];
    }
    if (t == 0 && live) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(y + col), "f"(yv[0]), "f"(yv[1]),
                     "f"(yv[2]), "f"(yv[3])
                     : "memory");
#else
#pragma unroll
        for (int c = 0; c < 4; c++) atomicAdd(y + col + c, yv[c]);
#endif
    }
}

#define SPLIT_KERNEL(P, SPG)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) w4a16_gemv_split_p##P##_g##SPG(                           \
        const int4* __restrict__ qt, const unsigned* __restrict__ qzeros, const unsigned short* __restrict__ scales, \
        const uint4* __restrict__ x, float* __restrict__ y, int K, int N, int spg, int zeroOffset) {              \
        gemv_split<P, SPG>(qt, qzeros, scales, x, y, K, N, spg, zeroOffset);                                   \
    }

SPLIT_KERNEL(4, 1)
SPLIT_KERNEL(4, 2)
SPLIT_KERNEL(4, 4)
SPLIT_KERNEL(4, 0)
SPLIT_KERNEL(8, 1)
SPLIT_KERNEL(8, 2)
SPLIT_KERNEL(8, 4)
SPLIT_KERNEL(8, 0)

// The tiled weight layout (tiled = 1 above): qweight [K/8, N] rearranged so that each 512-byte step
// of a 32-column tile (4 rows × 32 columns, lane 4g + t's 16 bytes = row 4·step + t, columns 4g..4g+3)
// is contiguous, and a tile's steps follow each other: dst[((tile · S) + step) · 32 + lane], S = K/32,
// ceil(N/32) tiles (columns past N zero). A warp then streams one contiguous run of memory instead of
// 4 rows × 128 bytes strided N·4 bytes apart, which the DRAM serves faster. The same bytes, moved.
extern "C" __global__ void w4a16_tile(const int4* __restrict__ src, int4* __restrict__ dst, int K, int N) {
    const int S = K >> 5;
    const long long total = (long long) ((N + 31) >> 5) * S * 32;
    for (long long u = blockIdx.x * (long long) blockDim.x + threadIdx.x; u < total;
         u += (long long) gridDim.x * blockDim.x) {
        const long long tile = u / (S * 32);
        const int rem = (int) (u - tile * S * 32), st = rem >> 5, lane = rem & 31;
        const int row = 4 * st + (lane & 3), col = (int) tile * 32 + 4 * (lane >> 2);
        dst[u] = col < N ? src[((long long) row * N + col) >> 2] : make_int4(0, 0, 0, 0);
    }
}

// Bandwidth probe: reads n16 int4s from p with a grid-stride loop (4 loads in flight per thread)
// and XORs them; the XOR lands in sink[0] only if it equals a value random data never gives, so
// nothing is written in practice but the loads cannot be dropped. What a plain read stream reaches.
extern "C" __global__ void __launch_bounds__(512) w4a16_probe_stream(const int4* __restrict__ p, long long n16,
                                                                     int* sink) {
    unsigned int v = 0;
    const long long stride = (long long) gridDim.x * blockDim.x;
    long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        const int4 a0 = __ldcs(p + i), a1 = __ldcs(p + i + stride), a2 = __ldcs(p + i + 2 * stride),
                   a3 = __ldcs(p + i + 3 * stride);
        v ^= (unsigned int) (a0.x ^ a0.y ^ a0.z ^ a0.w ^ a1.x ^ a1.y ^ a1.z ^ a1.w);
        v ^= (unsigned int) (a2.x ^ a2.y ^ a2.z ^ a2.w ^ a3.x ^ a3.y ^ a3.z ^ a3.w);
    }
    for (; i < n16; i += stride) {
        const int4 a0 = __ldcs(p + i);
        v ^= (unsigned int) (a0.x ^ a0.y ^ a0.z ^ a0.w);
    }
    if (v == 0x9E3779B9u) sink[0] = (int) v;
}
