// Forward-pass kernels on device-resident tensors (DeviceOps), beside ops.cu's rms_norm and swiglu,
// which DeviceOps reuses. Compiled at run time by NVRTC; self-contained (no #include).
//
// Row-major float32. Dimension letters: M rows (B sequences × T tokens), C hidden, H query heads,
// Hkv key/value heads, D head dim, V vocabulary, N columns of a matrix.

#define NEG_INF __int_as_float(0xff800000)

// x[m, :] = E[ids[m], :].   E: [V, C], ids: [M] (checked on the host), x: [M, C].
extern "C" __global__ void embed_gather(const float* E, const int* ids, float* x, long long M, int C) {
    const long long n = M * C;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const long long m = e / C;
        const int c = (int) (e - m * C);
        x[e] = E[(long long) ids[m] * C + c];
    }
}

// Rotate-half RoPE in place on x: [rows, heads, D] where row r is token r % T of its sequence
// (every sequence starts at position 0). cos, sin: [T, D/2], the tables of positions 0..T-1.
// x[i] = x1*cos - x2*sin, x[i + D/2] = x2*cos + x1*sin (as ops.cu's rope and ReferenceOps).
extern "C" __global__ void rope_seq(float* x, const float* cosT, const float* sinT, long long rows, int heads,
                                    int D, int T) {
    const int half = D >> 1;
    const long long n = rows * heads * half;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        const int i = (int) (e % half);
        const long long th = e / half;       // row * heads + head
        const int t = (int) ((th / heads) % T);
        const float c = cosT[(long long) t * half + i], s = sinT[(long long) t * half + i];
        float* r = x + th * D;
        const float x1 = r[i], x2 = r[i + half];
        r[i] = x1 * c - x2 * s;
        r[i + half] = x2 * c + x1 * s;
    }
}

// y[m, :] += b.   y: [M, N], b: [N].
extern "C" __global__ void add_bias(float* y, const float* b, long long M, int N) {
    const long long n = M * N;
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        y[e] += b[e % N];
    }
}

// Causal softmax in place over the rows of S: [R, T, T] (R heads of one sequence, scores already
// scaled by 1/sqrt(D)). Row i of each [T, T] matrix keeps keys 0..i: p_j = exp(s_j - max) / sum,
// and p_j = 0 for j > i, so that the following P·V product may run over all T keys. One block per
// row; the sum in double, as ReferenceOps sums its softmax weights.
extern "C" __global__ void causal_softmax(float* S, int T) {
    __shared__ float fs[32];
    __shared__ double ds[32];
    const long long row = blockIdx.x;
    const int i = (int) (row % T);
    float* s = S + row * T;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float mx = NEG_INF;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, s[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) fs[warp] = mx;
    __syncthreads();
    mx = NEG_INF;
    for (int w = 0; w < warps; w++) mx = fmaxf(mx, fs[w]);
    double sum = 0;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) sum += (double) expf(s[j] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) ds[warp] = sum;
    __syncthreads();
    sum = 0;
    for (int w = 0; w < warps; w++) sum += ds[w];
    const float inv = (float) (1.0 / sum);
    for (int j = threadIdx.x; j < T; j += blockDim.x) s[j] = j <= i ? expf(s[j] - mx) * inv : 0.f;
}

// flag[0] = 1 if any of x[0..n) is NaN or Inf (flag is left alone otherwise).
extern "C" __global__ void any_nonfinite(const float* x, long long n, int* flag) {
    for (long long e = blockIdx.x * (long long) blockDim.x + threadIdx.x; e < n;
         e += (long long) gridDim.x * blockDim.x) {
        if ((__float_as_uint(x[e]) & 0x7f800000u) == 0x7f800000u) { // exponent all ones: Inf or NaN
            flag[0] = 1;
            return;
        }
    }
}

// Holds the stream for ns nanoseconds (one thread spinning on the global timer): for benchmarks,
// so that the work queued behind it is all launched before it runs and CUDA events then time the
// GPU alone, not the host's launch rate.
extern "C" __global__ void stall_ns(long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while ((long long) (t - t0) < ns);
}
