// Shrink's forward-pass kernels for dev.shrink.core.ops.Ops, compiled at run time by NVRTC for the
// GPU found (CudaDevice.module). Self-contained: NVRTC gets no headers, so nothing is #included.
//
// All tensors are row-major float32, as in Ops. Dimension letters (declared once, as in Ops):
//   M rows, C columns (features), T tokens, H query heads, Hkv key/value heads, D head dim, V vocabulary.
// Every kernel writes every element of its output (the conformance test poisons outputs with NaN first).

#define NEG_INF __int_as_float(0xff800000)

// ---------------------------------------------------------------- reductions

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ double block_sum(double v, double* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); // scratch may still be read by an earlier reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0;
    for (int w = 0; w < warps; w++) total += scratch[w];
    return total;
}

// Max of v over the block; every thread gets it.
__device__ float block_max(float v, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = NEG_INF;
    for (int w = 0; w < warps; w++) m = fmaxf(m, scratch[w]);
    return m;
}

// ---------------------------------------------------------------- RMSNorm

// y[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w.   x, y: [M, C], w: [C]; one block per row.
// The sum of squares is accumulated in double, as in ReferenceOps. y may be x (each thread reads
// its own elements before writing them).
extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, int C, float eps) {
    __shared__ double scratch[32];
    const float* xr = x + (long long) blockIdx.x * C;
    float* yr = y + (long long) blockIdx.x * C;
    double ss = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double v = xr[c];
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    const double inv = 1.0 / sqrt(ss / C + (double) eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        yr[c] = (float) ((double) xr[c] * inv * (double) w[c]);
    }
}

// ---------------------------------------------------------------- RoPE

// Rotate-half RoPE in place on x: [T, heads, D]. cosT, sinT: [T, D/2], the table rows of each
// token's position (gathered on the host). For i < D/2 with x1 = x[i], x2 = x[i + D/2]:
// x[i] = x1*cos - x2*sin, x[i + D/2] = x2*cos + x1*sin. One thread per (t, head, i).
extern "C" __global__ void rope(float* x, const float* cosT, const float* sinT, int T, int heads, int D) {
    const int half = D >> 1;
    const long long n = (long long) T * heads * half;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e % half);
        const long long th = e / half;       // t * heads + head
        const int t = (int) (th / heads);
        const float c = cosT[(long long) t * half + i], s = sinT[(long long) t * half + i];
        float* row = x + th * D;
        const float x1 = row[i], x2 = row[i + half];
        row[i] = x1 * c - x2 * s;
        row[i + half] = x2 * c + x1 * s;
    }
}

// ---------------------------------------------------------------- SwiGLU

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may be gate.
extern "C" __global__ void swiglu(const float* gate, const float* up, float* out, long long n) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
         i += (long long) gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// GeGLU: out[i] = gelu_tanh(gate[i]) * up[i] with gelu_tanh(g) = g * sigmoid(2u), u = sqrt(2/pi) (g + 0.044715 g^3)
// (= g/2 (1 + tanh u), transformers' gelu_pytorch_tanh); out may be gate.
extern "C" __global__ void geglu(const float* gate, const float* up, float* out, long long n) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
         i += (long long) gridDim.x * blockDim.x) {
        const float g = gate[i];
        const float u2 = 1.5957691216057308f * (g + 0.044715f * g * g * g);
        out[i] = g / (1.0f + expf(-u2)) * up[i];
    }
}

// ---------------------------------------------------------------- log-softmax + NLL

// nll[m] = log(sum_v exp(logits[m, v] - max_m)) + max_m - logits[m, target[m]]; logits: [M, V].
// One block per row; the exponentials are summed in double, as in ReferenceOps. A target < 0 (a row
// to ignore, e.g. padding; DeviceOps.crossEntropy) writes 0 and reads nothing of the row; CudaOps'
// checks reject such targets, so its host path never passes one.
extern "C" __global__ void cross_entropy(const float* logits, const int* targets, double* nll, int V) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    const int t = targets[blockIdx.x];
    if (t < 0) {                           // the whole block returns: no barrier is left half-reached
        if (threadIdx.x == 0) nll[blockIdx.x] = 0.0;
        return;
    }
    const float* row = logits + (long long) blockIdx.x * V;
    float mx = NEG_INF;
    for (int c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, row[c]);
    mx = block_max(mx, fscratch);
    double s = 0;
    for (int c = threadIdx.x; c < V; c += blockDim.x) s += exp((double) (row[c] - mx));
    s = block_sum(s, dscratch);
    if (threadIdx.x == 0) {
        nll[blockIdx.x] = (double) mx + log(s) - (double) row[t];
    }
}

// ---------------------------------------------------------------- causal attention (flash-style)

// Tile sizes: a block of ATT_THREADS threads takes ATT_BQ query rows of one head (8 threads a row)
// and walks the visible keys in tiles of ATT_BK, keeping a running max m, sum l and unnormalised
// output O per row (the online softmax of FlashAttention, Dao et al. 2022), so the [Tq, Tk] score
// matrix is never stored.
#define ATT_BQ 16
#define ATT_BK 32
#define ATT_THREADS 128

// q, out: [Tq, H, D]; k, v: [Tk, Hkv, D]. Query row i sits at position Tk - Tq + i and sees keys
// 0..that position, or with window > 0 only the last `window` of them (position - window + 1..
// position, transformers' sliding window); head h reads kv head h / (H / Hkv). Grid: (ceil(Tq / ATT_BQ), H).
// Dynamic shared memory: (2*BQ*D + BK*(D+1) + BK*D + BQ*(BK+1)) floats (CudaOps.attentionSmem).
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attention(const float* q, const float* k, const float* v, float* out,
          int Tq, int Tk, int H, int Hkv, int D, int window, float scale, float softcap) {
    extern __shared__ float smem[];
    const int ks = D + 1;                  // padded row stride of the K tile (no bank conflicts)
    const int ss = ATT_BK + 1;             // padded row stride of the score tile
    float* Qs = smem;                      // [BQ, D]
    float* Os = Qs + ATT_BQ * D;           // [BQ, D]   unnormalised output
    float* Ks = Os + ATT_BQ * D;           // [BK, D+1]
    float* Vs = Ks + ATT_BK * ks;          // [BK, D]
    float* Ss = Vs + ATT_BK * D;           // [BQ, BK+1] scores, then probabilities

    const int tid = threadIdx.x;
    const int i0 = blockIdx.x * ATT_BQ, h = blockIdx.y, kvh = h / (H / Hkv);
    const int offset = Tk - Tq;            // position of query row 0

    for (int e = tid; e < ATT_BQ * D; e += ATT_THREADS) {
        const int r = e / D, d = e - r * D, i = i0 + r;
        Qs[e] = i < Tq ? q[((long long) i * H + h) * D + d] : 0.f;
        Os[e] = 0.f;
    }
    const int r = tid >> 3, sub = tid & 7; // this thread's row in the block and its lane in the row
    float m = NEG_INF, l = 0.f;            // running max and sum of row r (the same in its 8 lanes)
    const int iLast = (i0 + ATT_BQ < Tq ? i0 + ATT_BQ : Tq) - 1;
    const int jEnd = offset + iLast + 1;   // keys 0..jEnd-1 are visible to some row of the block

    int jFirst = window > 0 ? offset + i0 - window + 1 : 0; // the first key the block's first row sees
    if (jFirst < 0) jFirst = 0;

    for (int j0 = jFirst / ATT_BK * ATT_BK; j0 < jEnd; j0 += ATT_BK) {
        __syncthreads();                   // the previous tile is consumed (and Qs/Os are set)
        for (int e = tid; e < ATT_BK * D; e += ATT_THREADS) {
            const int c = e / D, d = e - c * D, j = j0 + c;
            const bool in = j < jEnd;
            const long long src = ((long long) j * Hkv + kvh) * D + d;
            Ks[c * ks + d] = in ? k[src] : 0.f;
            Vs[c * D + d] = in ? v[src] : 0.f;
        }
        __syncthreads();
        // S = Q K^T * scale, -inf where the key is in the query's future (or past Tq), or before its window
        for (int e = tid; e < ATT_BQ * ATT_BK; e += ATT_THREADS) {
            const int rr = e / ATT_BK, c = e - rr * ATT_BK, i = i0 + rr, j = j0 + c;
            float s = NEG_INF;
            if (i < Tq && j <= offset + i && (window <= 0 || j > offset + i - window)) {
                const float* qr = Qs + rr * D;
                const float* kr = Ks + c * ks;
                float dot = 0.f;
                for (int d = 0; d < D; d++) dot = fmaf(qr[d], kr[d], dot);
                s = dot * scale;
                if (softcap > 0.f) s = tanhf(s / softcap) * softcap; // Gemma 2's attn_logit_softcapping
            }
            Ss[rr * ss + c] = s;
        }
        __syncthreads();
        // online softmax of row r over this tile: its 8 lanes are adjacent threads of one warp
        float* Sr = Ss + r * ss;
        float mx = NEG_INF;
        for (int c = sub; c < ATT_BK; c += 8) mx = fmaxf(mx, Sr[c]);
        for (int o = 4; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float mNew = fmaxf(m, mx);
        const float base = mNew == NEG_INF ? 0.f : mNew; // nothing visible yet: keep O = 0, l = 0
        const float corr = expf(m - base);
        float sum = 0.f;
        for (int c = sub; c < ATT_BK; c += 8) {
            const float p = expf(Sr[c] - base);
            Sr[c] = p;
            sum += p;
        }
        for (int o = 4; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        l = l * corr + sum;
        m = mNew;
        __syncwarp();                      // the row's probabilities are visible to its lanes
        // O[r, :] = O[r, :] * corr + P[r, :] V
        for (int d = sub; d < D; d += 8) {
            float acc = Os[r * D + d] * corr;
            for (int c = 0; c < ATT_BK; c++) acc = fmaf(Sr[c], Vs[c * D + d], acc);
            Os[r * D + d] = acc;
        }
    }
    __syncwarp();
    const int i = i0 + r;
    if (i < Tq) {
        for (int d = sub; d < D; d += 8) out[((long long) i * H + h) * D + d] = Os[r * D + d] / l;
    }
}
