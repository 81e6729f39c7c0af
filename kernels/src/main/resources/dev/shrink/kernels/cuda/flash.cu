// Fused causal attention on fp16 tensor cores (DeviceOps.flashAttention, the resident forward's
// attention under --gpu-math fp16). Compiled at run time by NVRTC; self-contained (no #include).
//
// The scores are never materialised: one block takes 64 queries of one head of one sequence, its 4
// warps 16 queries each, and walks the key tiles of 64 that the causal mask (and a sliding window)
// leaves visible, keeping a running row maximum m, row sum l and output accumulator O in registers
// (the online softmax of FlashAttention-2): per tile S = scale · Q·Kᵀ (mma.m16n8k16, fp16 inputs,
// float32 sums), optionally c·tanh(S/c), masked, m' = max(m, rowmax S), P = exp(S − m'),
// O = O·exp(m − m') + P·V (P rounded to fp16 for the tensor cores, as every fp16 flash attention
// does), l likewise; at the end O / l in float32. A row's l sums the float32 P, before rounding.
//
// q: fp16 [B·T, H·D], k, v: fp16 [B·T, Hkv·D] (row-major, each sequence from position 0); out:
// float32 [B·T, H·D]. Grid: (T/64 rounded up, H·B). Query head h reads key/value head h / (H / Hkv). window > 0: the query at
// position i sees keys i − window + 1..i only (Ops.attention's sliding window).
//
// mma.m16n8k16 fragments (PTX ISA), lane = 4·g + t: A (16×16, row-major) a0 = (row g, cols 2t, 2t+1),
// a1 = (row g+8, same cols), a2 = (row g, cols 2t+8, 2t+9), a3 = (row g+8, cols 2t+8, 2t+9); B (16×8,
// "col") b0 = (rows 2t, 2t+1, col g), b1 = (rows 2t+8, 2t+9, col g); C (16×8) c0, c1 = (row g, cols
// 2t, 2t+1), c2, c3 = (row g+8, same cols). So S's C fragments of two adjacent 8-key tiles are, once
// rounded to fp16 pairs, exactly P's A fragment for those 16 keys: P never leaves registers. For
// S = Q·Kᵀ, B's column n is key n, its rows the head dims: K's rows in shared memory give b0, b1 as
// one 32-bit load each. For P·V, B's rows are keys and its columns dims: ldmatrix .trans reads them
// from V's rows (V kept row-major in shared memory as loaded).

#define FA_ROWS 64      // queries per block (4 warps × 16)
#define FA_KEYS 64      // keys per tile
#define FA_PAD 8        // halves of padding per shared-memory row: rows 16 bytes apart in banks

__device__ __forceinline__ void fa_mma(float* c, unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3,
                                       unsigned int b0, unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// two floats to an fp16 pair (round to nearest), lo in the low half
__device__ __forceinline__ unsigned int fa_pack(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

#define FA_NEG_INF __int_as_float(0xff800000)

// shared-memory address of a generic pointer into shared memory
__device__ __forceinline__ unsigned int fa_smem_addr(const void* p) {
    unsigned int a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

__device__ __forceinline__ void fa_ldsm_x4_trans(unsigned int* r, const void* smem) {
    unsigned int a = fa_smem_addr(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

__device__ __forceinline__ void fa_cp16(void* smem, const void* gmem, bool valid) {
    unsigned int a = fa_smem_addr(smem);
    int n = valid ? 16 : 0; // zero-fill rows past the sequence
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(a), "l"(gmem), "r"(n));
}

// Loads a tile of 64 rows × D halves (rows r0.. of a [T, ld] matrix; rows ≥ T zero-filled) into
// smem [64][D + FA_PAD] with 16-byte cp.async copies by all 128 threads.
template <int D>
__device__ __forceinline__ void fa_load_tile(unsigned short* smem, const unsigned short* g, long long ld, int r0,
                                             int T) {
    constexpr int CHUNKS = D / 8; // 16-byte chunks per row
    for (int c = threadIdx.x; c < FA_KEYS * CHUNKS; c += 128) {
        const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        const bool valid = r0 + r < T;
        const unsigned short* src = g + (long long) (valid ? r0 + r : 0) * ld + col;
        fa_cp16(smem + r * (D + FA_PAD) + col, src, valid);
    }
    asm volatile("cp.async.commit_group;");
}

template <int D>
__device__ __forceinline__ void fa_impl(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                        const unsigned short* __restrict__ v, float* __restrict__ out, int T, int H,
                                        int Hkv, int window, float scale, float softcap) {
    extern __shared__ __align__(16) unsigned short fa_smem[];
    unsigned short* Ks = fa_smem;
    unsigned short* Vs = fa_smem + FA_KEYS * (D + FA_PAD);
    const int tiles = (T + FA_ROWS - 1) / FA_ROWS;
    const int qt = tiles - 1 - (int) blockIdx.x; // the longest rows first
    const int h = blockIdx.y % H, b = blockIdx.y / H, kvh = h / (H / Hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const long long qld = (long long) H * D, kvld = (long long) Hkv * D;
    const unsigned short* qb = q + (long long) b * T * qld + (long long) h * D;
    const unsigned short* kb = k + (long long) b * T * kvld + (long long) kvh * D;
    const unsigned short* vb = v + (long long) b * T * kvld + (long long) kvh * D;
    const int row0 = qt * FA_ROWS + warp * 16; // this warp's first query
    const int ra = row0 + g, rb = row0 + g + 8; // the two rows this thread holds

    // Q's A fragments for all D/16 k-steps, straight from global memory (read once)
    unsigned int qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int c0 = kk * 16 + 2 * t;
        qa[kk][0] = ra < T ? *(const unsigned int*) (qb + (long long) ra * qld + c0) : 0u;
        qa[kk][1] = rb < T ? *(const unsigned int*) (qb + (long long) rb * qld + c0) : 0u;
        qa[kk][2] = ra < T ? *(const unsigned int*) (qb + (long long) ra * qld + c0 + 8) : 0u;
        qa[kk][3] = rb < T ? *(const unsigned int*) (qb + (long long) rb * qld + c0 + 8) : 0u;
    }
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float ma = FA_NEG_INF, mb = FA_NEG_INF, la = 0.f, lb = 0.f;
    const float LOG2E = 1.4426950408889634f;

    const int lastRow = min(qt * FA_ROWS + FA_ROWS - 1, T - 1);
    const int firstKey = window > 0 ? max(0, qt * FA_ROWS - window + 1) : 0;
    for (int kt = firstKey / FA_KEYS; kt * FA_KEYS <= lastRow; kt++) {
        const int key0 = kt * FA_KEYS;
        __syncthreads(); // the previous tile's readers are done
        fa_load_tile<D>(Ks, kb, kvld, key0, T);
        fa_load_tile<D>(Vs, vb, kvld, key0, T);
        asm volatile("cp.async.wait_all;");
        __syncthreads();
        if (key0 > row0 + 15 || (window > 0 && key0 + FA_KEYS - 1 < row0 - window + 1)) {
            continue; // nothing visible to this warp's rows in this tile
        }
        float s[FA_KEYS / 8][4];
#pragma unroll
        for (int n = 0; n < FA_KEYS / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
            const unsigned short* kr = Ks + (n * 8 + g) * (D + FA_PAD) + 2 * t;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const unsigned int b0 = *(const unsigned int*) (kr + kk * 16);
                const unsigned int b1 = *(const unsigned int*) (kr + kk * 16 + 8);
                fa_mma(s[n], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
            }
        }
        // scale, soft-cap, mask; the tile's row maxima
        float xa = FA_NEG_INF, xb = FA_NEG_INF;
#pragma unroll
        for (int n = 0; n < FA_KEYS / 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = key0 + n * 8 + 2 * t + (e & 1), row = e < 2 ? ra : rb;
                float x = s[n][e] * scale;
                if (softcap > 0.f) x = tanhf(x / softcap) * softcap;
                const bool visible = key <= row && key < T && (window <= 0 || key > row - window);
                x = visible ? x : FA_NEG_INF;
                s[n][e] = x;
                if (e < 2) xa = fmaxf(xa, x); else xb = fmaxf(xb, x);
            }
        }
        xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 1));
        xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 2));
        xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 1));
        xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 2));
        const float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
        // a row that has seen no visible key yet keeps m = -inf: its factors must not be NaN
        const float ba = na == FA_NEG_INF ? 0.f : na * LOG2E, bb = nb == FA_NEG_INF ? 0.f : nb * LOG2E;
        const float fa = exp2f(ma * LOG2E - ba), fb = exp2f(mb * LOG2E - bb);
        ma = na;
        mb = nb;
        la *= fa;
        lb *= fb;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= fa;
            o[n][1] *= fa;
            o[n][2] *= fb;
            o[n][3] *= fb;
        }
        unsigned int p[FA_KEYS / 8][2];
#pragma unroll
        for (int n = 0; n < FA_KEYS / 8; n++) {
            const float p0 = exp2f(s[n][0] * LOG2E - ba), p1 = exp2f(s[n][1] * LOG2E - ba);
            const float p2 = exp2f(s[n][2] * LOG2E - bb), p3 = exp2f(s[n][3] * LOG2E - bb);
            la += p0 + p1;
            lb += p2 + p3;
            p[n][0] = fa_pack(p0, p1);
            p[n][1] = fa_pack(p2, p3);
        }
        // O += P·V over the tile's 4 steps of 16 keys
#pragma unroll
        for (int kk = 0; kk < FA_KEYS / 16; kk++) {
            const unsigned int a0 = p[2 * kk][0], a1 = p[2 * kk][1], a2 = p[2 * kk + 1][0], a3 = p[2 * kk + 1][1];
            const int mat = lane >> 3, r = lane & 7; // ldmatrix: lanes 8i..8i+7 address matrix i's rows
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                unsigned int bv[4];
                fa_ldsm_x4_trans(bv, Vs + (kk * 16 + (mat & 1) * 8 + r) * (D + FA_PAD) + (n + (mat >> 1)) * 8);
                fa_mma(o[n], a0, a1, a2, a3, bv[0], bv[1]);
                fa_mma(o[n + 1], a0, a1, a2, a3, bv[2], bv[3]);
            }
        }
    }
    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    const float ia = 1.f / la, ib = 1.f / lb;
    float* ob = out + (long long) b * T * qld + (long long) h * D;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        const int c = n * 8 + 2 * t;
        if (ra < T) *(float2*) (ob + (long long) ra * qld + c) = make_float2(o[n][0] * ia, o[n][1] * ia);
        if (rb < T) *(float2*) (ob + (long long) rb * qld + c) = make_float2(o[n][2] * ib, o[n][3] * ib);
    }
}

#define FA_KERNEL(DIM)                                                                                          \
    extern "C" __global__ void __launch_bounds__(128) flash_attention_##DIM(                                    \
        const unsigned short* q, const unsigned short* k, const unsigned short* v, float* out, int T, int H,     \
        int Hkv, int window, float scale, float softcap) {                                                      \
        fa_impl<DIM>(q, k, v, out, T, H, Hkv, window, scale, softcap);                                          \
    }

FA_KERNEL(32)
FA_KERNEL(64)
FA_KERNEL(96)
FA_KERNEL(128)
