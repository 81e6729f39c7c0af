// Pruning masks on the GPU (dev.shrink.prune.Masks' selections, CudaMasks wires them): the weights
// with the lowest scores are pruned, exactly k of them, ties broken as the CPU (and torch.topk) do:
// of equal scores the earlier index is kept and the later one pruned. Scores are finite floats ≥ 0,
// whose bit patterns order as the values do (−0 taken as +0), so each element has a unique 64-bit key
//   key = bits(score) << 32 | (0xffffffff − index)
// and "prune the k lowest" is "prune the keys ≤ the k-th smallest key", found by a radix select
// from the most significant bit (64 counting passes over the elements).
//
// S, W: [N, K] row-major; pruned: [N, K] bytes, 1 = set to zero.

#define FULL 0xffffffffu

__device__ __forceinline__ unsigned long long mask_key(float s, unsigned int index) {
    return ((unsigned long long) __float_as_uint(__fadd_rn(s, 0.f)) << 32) | (unsigned long long) (0xffffffffu - index);
}

// S = |W| (norm == null: magnitude) or S[n, j] = (float) (|W[n, j]| · norm[j]) in double (Wanda, norm = ‖X_j‖₂).
extern "C" __global__ void mask_scores(const float* W, const double* norm, float* S, long long n, int K) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        const float a = fabsf(W[e]);
        S[e] = norm ? (float) __dmul_rn((double) a, norm[e % K]) : a;
    }
}

// Block-wide sum of an int, broadcast to every thread (blockDim a multiple of 32, at most 1024).
__device__ int block_sum_int(int v) {
    __shared__ int part[32];
    __shared__ int total;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        int t = 0;
        for (int w = 0; w < (blockDim.x >> 5); w++) t += part[w];
        total = t;
    }
    __syncthreads();
    const int t = total;
    __syncthreads();
    return t;
}

// Per row n = blockIdx.x: prune the k lowest of S[n, :] (k in 0..K). Keys use the index within the row.
extern "C" __global__ void mask_row_lowest(const float* S, unsigned char* pruned, int N, int K, int k) {
    const int n = blockIdx.x;
    const float* s = S + (long long) n * K;
    unsigned char* p = pruned + (long long) n * K;
    unsigned long long prefix = 0;  // the bits of the k-th smallest key found so far
    int rank = k;                   // its rank among the keys that share the prefix
    if (k > 0 && k < K) {
        for (int b = 63; b >= 0; b--) {
            const unsigned long long high = b == 63 ? 0ull : ~0ull << (b + 1);
            int c = 0;
            for (int j = threadIdx.x; j < K; j += blockDim.x) {
                const unsigned long long key = mask_key(s[j], (unsigned int) j);
                c += (key & high) == prefix && ((key >> b) & 1ull) == 0ull;
            }
            c = block_sum_int(c);
            if (c < rank) {
                prefix |= 1ull << b;
                rank -= c;
            }
        }
    }
    for (int j = threadIdx.x; j < K; j += blockDim.x) {
        p[j] = k >= K ? 1 : k <= 0 ? 0 : mask_key(s[j], (unsigned int) j) <= prefix;
    }
}

// N:M: per group of m consecutive inputs (thread g), prune the `prune` lowest: repeatedly the lowest
// not yet pruned, the last of equal scores (so the first is kept), as Masks.lowestPerGroup. m ≤ 64.
extern "C" __global__ void mask_group_lowest(const float* S, unsigned char* pruned, long long groups, int m, int prune) {
    for (long long g = blockIdx.x * (long long) blockDim.x + threadIdx.x; g < groups;
         g += (long long) gridDim.x * blockDim.x) {
        const float* s = S + g * m;
        unsigned char* p = pruned + g * m;
        unsigned long long done = 0ull;
        for (int i = 0; i < m; i++) p[i] = 0;
        for (int q = 0; q < prune; q++) {
            int best = -1;
            for (int i = 0; i < m; i++) {
                if (!((done >> i) & 1ull) && (best < 0 || s[i] <= s[best])) best = i;
            }
            done |= 1ull << best;
            p[best] = 1;
        }
    }
}

// One pass of the whole-matrix radix select: count[0] += #{e : (key_e & high) == prefix, bit b of key_e = 0}
// with key_e = mask_key(S[e], e) (n < 2^32).
extern "C" __global__ void mask_count(const float* S, long long n, unsigned long long prefix, unsigned long long high,
                                      int b, unsigned long long* count) {
    int c = 0;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        const unsigned long long key = mask_key(S[e], (unsigned int) e);
        c += (key & high) == prefix && ((key >> b) & 1ull) == 0ull;
    }
    c = block_sum_int(c);
    if (threadIdx.x == 0 && c > 0) atomicAdd(count, (unsigned long long) c);
}

// pruned[e] = key_e ≤ threshold; all = 1: every element pruned (k = n), all = −1: none (k = 0).
extern "C" __global__ void mask_mark(const float* S, long long n, unsigned long long threshold, int all,
                                     unsigned char* pruned) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n; e += (long long) gridDim.x * blockDim.x) {
        pruned[e] = all > 0 ? 1 : all < 0 ? 0 : mask_key(S[e], (unsigned int) e) <= threshold;
    }
}
