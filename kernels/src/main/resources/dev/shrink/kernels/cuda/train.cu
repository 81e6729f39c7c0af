// Training kernels (distill's CudaTrainOps): every op of the decoder forward beside its backward,
// the distillation loss, the squared error, reductions and AdamW, on device-resident float32
// tensors. Compiled at run time by NVRTC; self-contained (no #include). The matrix products are
// cuBLAS calls made by the host; these are the row, head and element loops around them.
//
// Row-major float32. Dimension letters: M rows (B sequences × T tokens), C hidden, H query heads,
// Hkv key/value heads, D head dim, V vocabulary, N columns. Backward kernels ADD into their
// gradient outputs (dx += ...), as TrainOps specifies. Doubles travel as their 64-bit patterns
// (long long), since the launcher passes int, long long, float and pointers.
// Sums that decide a result are accumulated in double, in a fixed order (no atomics), so a run
// repeats bit for bit.

#define NEG_INF __int_as_float(0xff800000)
#define GRID_LOOP(e, n) \
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < (n); \
         e += (long long) gridDim.x * blockDim.x)

__device__ __forceinline__ double bits_d(long long b) { return __longlong_as_double(b); }

// Max over the block (blockDim.x a multiple of 32); sh: 32 floats. Every thread gets the result.
__device__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); // earlier readers of sh are done
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = NEG_INF;
    for (int w = 0; w < warps; w++) r = fmaxf(r, sh[w]);
    return r;
}

// Sum over the block, warps added in order; sh: 32 doubles. Every thread gets the result.
__device__ double block_sum(double v, double* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double r = 0;
    for (int w = 0; w < warps; w++) r += sh[w];
    return r;
}

// ---------------------------------------------------------------- element-wise

// x[i] += d[i]
extern "C" __global__ void t_add(float* x, const float* d, long long n) {
    GRID_LOOP(e, n) x[e] += d[e];
}

// x[i] *= s
extern "C" __global__ void t_scale(float* x, float s, long long n) {
    GRID_LOOP(e, n) x[e] *= s;
}

// a[idx[i]] = 0
extern "C" __global__ void t_zero_at(float* a, const int* idx, long long n) {
    GRID_LOOP(e, n) a[idx[e]] = 0.f;
}

// ---------------------------------------------------------------- embedding

// x[m, :] = E[ids[m], :].   E: [V, C], ids: [M], x: [M, C].
extern "C" __global__ void t_embed_fwd(const float* E, const int* ids, float* x, long long M, int C) {
    GRID_LOOP(e, M * C) {
        const long long m = e / C;
        const int c = (int) (e - m * C);
        x[e] = E[(long long) ids[m] * C + c];
    }
}

// dE[tok, :] += dx[m, :] for every m with ids[m] == tok, one block per distinct token, the rows
// of a token in ascending order (as the CPU adds them): no two blocks write the same row.
// plan: [U distinct tokens][U + 1 starts into order][M positions grouped by token, ascending].
extern "C" __global__ void t_embed_bwd(const float* dx, const int* plan, int U, float* dE, int C) {
    const int* uniq = plan;
    const int* starts = plan + U;
    const int* order = plan + 2 * U + 1;
    for (int u = blockIdx.x; u < U; u += gridDim.x) {
        float* row = dE + (long long) uniq[u] * C;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float acc = row[c];
            for (int k = starts[u]; k < starts[u + 1]; k++) acc += dx[(long long) order[k] * C + c];
            row[c] = acc;
        }
    }
}

// ---------------------------------------------------------------- RMSNorm

// y = x · r · w per row, r = 1/sqrt(mean(x²) + eps) saved in rstd[m]. One block per row.
extern "C" __global__ void t_rms_fwd(const float* x, const float* w, float* y, float* rstd, int C, long long epsBits) {
    __shared__ double sh[32];
    const long long m = blockIdx.x;
    const float* xr = x + m * C;
    double ss = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double) xr[c] * xr[c];
    ss = block_sum(ss, sh);
    const float r = (float) (1.0 / sqrt(ss / C + bits_d(epsBits)));
    if (threadIdx.x == 0) rstd[m] = r;
    float* yr = y + m * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = xr[c] * r * w[c];
}

// dx += r·dy·w − r³·x·(Σ_c dy·w·x)/C per row. One block per row.
extern "C" __global__ void t_rms_bwd_dx(const float* dy, const float* x, const float* w, const float* rstd,
                                        float* dx, int C) {
    __shared__ double sh[32];
    const long long m = blockIdx.x;
    const float* dyr = dy + m * C;
    const float* xr = x + m * C;
    double dot = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += (double) dyr[c] * w[c] * xr[c];
    dot = block_sum(dot, sh);
    const double r = rstd[m];
    const double k = r * r * r * dot / C;
    float* dxr = dx + m * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dxr[c] += (float) (r * dyr[c] * w[c] - k * xr[c]);
}

// part[ch, c] = Σ over rows m of chunk ch (rows rows each) of dy·x·r (r = rstd[m], or 1 when rstd is
// null: then it is the column sum of dy, a bias gradient, with x unused). grid: (ceil(C/threads), chunks).
extern "C" __global__ void t_col_partial(const float* dy, const float* x, const float* rstd, long long M, int C,
                                         int rows, double* part) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const long long m0 = (long long) blockIdx.y * rows;
    const long long m1 = min(M, m0 + rows);
    double s = 0;
    for (long long m = m0; m < m1; m++) {
        if (rstd) s += (double) dy[m * C + c] * x[m * C + c] * (double) rstd[m];
        else s += dy[m * C + c];
    }
    part[(long long) blockIdx.y * C + c] = s;
}

// out[c] += Σ_ch part[ch, c], chunks in order.
extern "C" __global__ void t_col_reduce_add(const double* part, int chunks, int C, float* out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double s = 0;
    for (int ch = 0; ch < chunks; ch++) s += part[(long long) ch * C + c];
    out[c] += (float) s;
}

// y[m, :] += b.   y: [M, N], b: [N].
extern "C" __global__ void t_add_bias(float* y, const float* b, long long M, int N) {
    GRID_LOOP(e, M * N) y[e] += b[e % N];
}

// ---------------------------------------------------------------- RoPE

// Rotate-half RoPE in place on x: [rows, heads, D], row r at position r % T; cos, sin: [T, D/2];
// sign = 1 rotates by the angle (forward), −1 by its negative (the backward: the rotation's transpose).
extern "C" __global__ void t_rope(float* x, const float* cosT, const float* sinT, long long rows, int heads, int D,
                                  int T, float sign) {
    const int half = D >> 1;
    GRID_LOOP(e, rows * heads * half) {
        const int i = (int) (e % half);
        const long long th = e / half; // row * heads + head
        const int t = (int) ((th / heads) % T);
        const float c = cosT[(long long) t * half + i], s = sign * sinT[(long long) t * half + i];
        float* r = x + th * D;
        const float x1 = r[i], x2 = r[i + half];
        r[i] = x1 * c - x2 * s;
        r[i + half] = x2 * c + x1 * s;
    }
}

// ---------------------------------------------------------------- attention

// Causal softmax in place over S: [R, T, T] (scores already scaled), rows r·T + i keep keys 0..i,
// the rest set to 0; lse[row] = max + log Σ exp (the log-sum-exp the backward recomputes P from).
// One block per row; the sum in double.
extern "C" __global__ void t_softmax_lse(float* S, float* lse, int T) {
    __shared__ float fs[32];
    __shared__ double ds[32];
    const long long row = blockIdx.x;
    const int i = (int) (row % T);
    float* s = S + row * T;
    float mx = NEG_INF;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = block_max(mx, fs);
    double sum = 0;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) sum += (double) expf(s[j] - mx);
    sum = block_sum(sum, ds);
    const float inv = (float) (1.0 / sum);
    if (threadIdx.x == 0) lse[row] = (float) (mx + log(sum));
    for (int j = threadIdx.x; j < T; j += blockDim.x) s[j] = j <= i ? expf(s[j] - mx) * inv : 0.f;
}

// P = exp(S − lse[row]) in place for keys 0..i of row i, 0 beyond. S: [R, T, T], lse: [R·T].
extern "C" __global__ void t_probs(float* S, const float* lse, int T, long long n) {
    GRID_LOOP(e, n) {
        const long long row = e / T;
        const int j = (int) (e - row * T), i = (int) (row % T);
        S[e] = j <= i ? expf(S[e] - lse[row]) : 0.f;
    }
}

// Di[b, h, t] = Σ_d dOut[b·T + t, h, d] · out[b·T + t, h, d] (in double, stored as float).
extern "C" __global__ void t_rowdot(const float* dOut, const float* out, float* Di, int B, int T, int H, int D) {
    GRID_LOOP(e, (long long) B * T * H) {
        const long long bt = e / H;
        const int h = (int) (e - bt * H);
        const long long b = bt / T, t = bt - b * T;
        const float* a = dOut + e * D;
        const float* o = out + e * D;
        double s = 0;
        for (int d = 0; d < D; d++) s += (double) a[d] * o[d];
        Di[(b * H + h) * T + t] = (float) s;
    }
}

// dS = P ⊙ (dP − Di[row]) in place over dP: [R, T, T]; Di: [R·T] (one sequence's rows).
extern "C" __global__ void t_dsoftmax(const float* P, float* dP, const float* Di, int T, long long n) {
    GRID_LOOP(e, n) {
        const long long row = e / T;
        dP[e] = P[e] * (dP[e] - Di[row]);
    }
}

// ---------------------------------------------------------------- SwiGLU

// out = silu(g) · u, silu(g) = g·σ(g).
extern "C" __global__ void t_swiglu_fwd(const float* g, const float* u, float* out, long long n) {
    GRID_LOOP(e, n) {
        const float x = g[e];
        out[e] = x * (1.f / (1.f + expf(-x))) * u[e];
    }
}

// dg += dOut·u·σ(g)·(1 + g·(1 − σ(g))); du += dOut·g·σ(g).
extern "C" __global__ void t_swiglu_bwd(const float* dOut, const float* g, const float* u, float* dg, float* du,
                                        long long n) {
    GRID_LOOP(e, n) {
        const float x = g[e], d = dOut[e];
        const float sig = 1.f / (1.f + expf(-x));
        dg[e] += d * u[e] * (sig * (x * (1.f - sig) + 1.f));
        du[e] += d * x * sig;
    }
}

// ---------------------------------------------------------------- losses

// log-softmax statistics of z[0..V) · scale: the max and the sum of exp(z·scale − max) (double).
__device__ void softmax_stats(const float* z, int V, float scale, float* fs, double* ds, float* mxOut, double* sumOut) {
    float mx = NEG_INF;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, z[j] * scale);
    mx = block_max(mx, fs);
    double s = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += (double) expf(z[j] * scale - mx);
    *sumOut = block_sum(s, ds);
    *mxOut = mx;
}

// The distillation loss of one row of logits per block (Losses.row's formulas in float32, sums in
// double): with q = softmax(zs/T), p = softmax(zt/T),
//   KL:          klRow = T²·Σ p (log p − log q),  g = kl·(q − p)
//   reverse KL:  klRow = T²·Σ q (log q − log p),  g = kl·q·(log q − log p − KL)
//   CE:          ceRow = −log softmax(zs)[target],  g += ce·(softmax(zs) − [j = target])
// kl = klScale·T, ce = ceScale (0: that part off). dz = g when alias (dz is zs itself: each element
// is read before its own thread overwrites it), dz += g otherwise.
extern "C" __global__ void t_distill_loss(const float* zs, const float* zt, const int* targets, float* dz,
                                          double* klRow, double* ceRow, int V, float invT, int reverse, float kl,
                                          float ce, int alias, long long T2Bits) {
    __shared__ float fs[32];
    __shared__ double ds[32];
    const long long m = blockIdx.x;
    const float* s = zs + m * V;
    const float* t = zt ? zt + m * V : 0;
    const int target = targets[m];
    const bool hasKl = kl != 0.f;
    const bool hasCe = ce != 0.f && target >= 0;
    float mxS = 0, lseS = 0, invS = 0, mxT = 0, lseT = 0, invT_ = 0, d = 0;
    if (hasKl) {
        double sum;
        softmax_stats(s, V, invT, fs, ds, &mxS, &sum);
        lseS = (float) (mxS + log(sum));
        invS = (float) (1.0 / sum);
        softmax_stats(t, V, invT, fs, ds, &mxT, &sum);
        lseT = (float) (mxT + log(sum));
        invT_ = (float) (1.0 / sum);
        double acc = 0;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            const float a = s[j] * invT, b = t[j] * invT;
            const float lq = a - lseS, lp = b - lseT;
            if (reverse) {
                const float q = expf(a - mxS) * invS;
                acc += (double) q * (lq - lp);
            } else {
                const float p = expf(b - mxT) * invT_;
                acc += (double) p * (lp - lq);
            }
        }
        const double dd = block_sum(acc, ds);
        d = (float) dd;
        if (threadIdx.x == 0) klRow[m] = bits_d(T2Bits) * dd;
    } else if (threadIdx.x == 0) {
        klRow[m] = 0;
    }
    float mx1 = mxS, inv1 = invS;
    if (hasCe) {
        float lse1 = lseS;
        if (!(hasKl && invT == 1.f)) {
            double sum;
            softmax_stats(s, V, 1.f, fs, ds, &mx1, &sum);
            lse1 = (float) (mx1 + log(sum));
            inv1 = (float) (1.0 / sum);
        }
        if (threadIdx.x == 0) ceRow[m] = -(double) (s[target] - lse1);
    } else if (threadIdx.x == 0) {
        ceRow[m] = 0;
    }
    __syncthreads();
    float* out = dz + m * V;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float g = 0.f;
        const float zj = s[j];
        if (hasKl) {
            const float a = zj * invT, b = t[j] * invT;
            const float q = expf(a - mxS) * invS;
            if (reverse) {
                g = kl * q * ((a - lseS) - (b - lseT) - d);
            } else {
                const float p = expf(b - mxT) * invT_;
                g = kl * (q - p);
            }
        }
        if (hasCe) {
            g += ce * (expf(zj - mx1) * inv1);
            if (j == target) g -= ce;
        }
        if (alias) out[j] = g;
        else out[j] += g;
    }
}

// part[block] = Σ (a − b)² over this block's grid-stride elements; da += scale2·(a − b) when da is given.
extern "C" __global__ void t_squared_error(const float* a, const float* b, float* da, long long n, long long scale2Bits,
                                           double* part) {
    __shared__ double sh[32];
    const double scale2 = bits_d(scale2Bits);
    double s = 0;
    GRID_LOOP(e, n) {
        const double d = (double) a[e] - b[e];
        s += d * d;
        if (da) da[e] += (float) (scale2 * d);
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// part[block] = Σ a² over this block's grid-stride elements.
extern "C" __global__ void t_sum_squares(const float* a, long long n, double* part) {
    __shared__ double sh[32];
    double s = 0;
    GRID_LOOP(e, n) s += (double) a[e] * a[e];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// ---------------------------------------------------------------- optimizer

// One AdamW update (AdamW.java: torch's single-tensor path), in double per element as the CPU does.
extern "C" __global__ void t_adamw(float* p, const float* g, float* m, float* v, long long n, long long decayBits,
                                   long long b1Bits, long long b2Bits, long long stepBits, long long bc2Bits,
                                   long long epsBits) {
    const double decay = bits_d(decayBits), b1 = bits_d(b1Bits), b2 = bits_d(b2Bits);
    const double stepSize = bits_d(stepBits), bc2 = bits_d(bc2Bits), eps = bits_d(epsBits);
    GRID_LOOP(e, n) {
        const double gi = g[e];
        const double pi = p[e] * decay;
        const double mi = m[e] + (gi - m[e]) * (1 - b1);
        const double vi = v[e] * b2 + (1 - b2) * gi * gi;
        m[e] = (float) mi;
        v[e] = (float) vi;
        p[e] = (float) (pi - stepSize * mi / (sqrt(vi) / bc2 + eps));
    }
}
