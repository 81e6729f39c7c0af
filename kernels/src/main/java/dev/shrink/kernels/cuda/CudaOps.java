package dev.shrink.kernels.cuda;

import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cpu.OpsChecks;
import java.lang.foreign.MemorySegment;

/**
 * {@link Ops} on one NVIDIA GPU: gemm through cuBLAS (float32, row-major to column-major by
 * operand swap), rmsNorm, rope, attention (causal, grouped KV heads, tiled with an online softmax),
 * swiglu and crossEntropy as NVRTC kernels from {@code ops.cu}.
 *
 * <p>Ops take Java arrays, so each call copies its inputs to the GPU and its outputs back, into
 * device buffers that are kept between calls and only grow (one per argument position). That is
 * correct but bounded by the copies; the speed the GPU can give needs activations and weights that
 * stay on the device across ops (see the README's CUDA section). Calls are serialized.
 *
 * <p>Argument checks are the CPU backends' ({@link OpsChecks}), so every backend rejects the
 * same calls with the same messages.
 */
public final class CudaOps implements Ops, AutoCloseable {
    /** Kernel source resource. */
    static final String SOURCE = "ops.cu";
    /** Query rows and keys per attention tile; must match ATT_BQ / ATT_BK / ATT_THREADS in ops.cu. */
    private static final int ATT_BQ = 16, ATT_BK = 32, ATT_THREADS = 128;
    /** All bits set: a NaN as float and as double. */
    private static final int POISON = 0xFFFFFFFF;

    private final CudaDevice device;
    private final CublasHandle blas;
    private final CudaModule module;
    private final CudaKernel rmsNorm, rope, swiglu, geglu, crossEntropy, attention;
    /** Device buffers by argument position, grown on demand. */
    private final DeviceBuffer[] slots = new DeviceBuffer[4];
    private boolean poison;
    private boolean closed;
    private volatile GemmMath math = GemmMath.FP32;
    private DeviceOps deviceOps;

    private CudaOps(CudaDevice device) {
        this.device = device;
        CublasHandle b = null;
        CudaModule m = null;
        try {
            b = device.openCublas();
            m = device.module(SOURCE);
            rmsNorm = m.kernel("rms_norm");
            rope = m.kernel("rope");
            swiglu = m.kernel("swiglu");
            geglu = m.kernel("geglu");
            crossEntropy = m.kernel("cross_entropy");
            attention = m.kernel("attention");
        } catch (RuntimeException e) {
            if (m != null) {
                m.close();
            }
            if (b != null) {
                b.close();
            }
            throw e;
        }
        blas = b;
        module = m;
    }

    /**
     * Ops on GPU {@code ordinal}.
     *
     * @throws CudaException "CUDA not available: ..." or the failing call
     */
    public static CudaOps open(int ordinal) {
        CudaDevice d = Cuda.get().open(ordinal);
        try {
            return new CudaOps(d);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /** "cuda (NVIDIA H200, sm_90)", with ", tf32" when the GEMMs run in TF32. */
    @Override
    public String name() {
        return "cuda (" + device.describe() + (math == GemmMath.TF32 ? ", tf32" : "") + ")";
    }

    /** The arithmetic of the GEMMs (this object's and its {@link #deviceOps()}'): float32 unless set. */
    public GemmMath math() {
        return math;
    }

    /**
     * Sets the GEMMs' arithmetic. {@link GemmMath#TF32} departs from {@code Ops}' float32 contract
     * (errors ~1e-3·sqrt(K) relative) for several times the speed: a choice the user makes.
     */
    public CudaOps setMath(GemmMath m) {
        math = java.util.Objects.requireNonNull(m);
        return this;
    }

    /**
     * The ops on device-resident tensors, sharing this object's device, stream, cuBLAS handle and
     * kernels (made on first use, closed with this object).
     */
    public synchronized DeviceOps deviceOps() {
        if (closed) {
            throw new IllegalStateException("CudaOps used after close");
        }
        if (deviceOps == null) {
            deviceOps = new DeviceOps(this, device, blas, module);
        }
        return deviceOps;
    }

    public CudaDevice device() {
        return device;
    }

    /** The kernels' module: whether it came from the cubin cache, how long NVRTC took. */
    public CudaModule module() {
        return module;
    }

    /**
     * For the conformance tests: fill every device output buffer with NaN before each kernel, so
     * an element a kernel fails to write shows up instead of a stale value from an earlier call.
     */
    synchronized void poisonOutputs(boolean on) {
        poison = on;
    }

    // ---------------------------------------------------------------- gemm

    /** cuBLAS sgemm on row-major arrays; see {@link CublasHandle#sgemmRowMajor}. */
    @Override
    public synchronized void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
                                  float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                                  float beta, float[] C, int cOff, int ldc) {
        OpsChecks.gemm(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc);
        if (M == 0 || N == 0) {
            return;
        }
        if (K == 0) { // C = beta · C (no product); with beta = 0 the old C is not read
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    int c = cOff + i * ldc + j;
                    C[c] = beta == 0f ? 0f : beta * C[c];
                }
            }
            return;
        }
        // Stored shapes: A [M, K] or [K, M]; B [K, N] or [N, K]; spans from the first to the last element.
        long aSpan = span(transA ? K : M, transA ? M : K, lda);
        long bSpan = span(transB ? N : K, transB ? K : N, ldb);
        long cSpan = span(M, N, ldc);
        DeviceBuffer dA = slot(0, aSpan * 4), dB = slot(1, bSpan * 4), dC = slot(2, cSpan * 4);
        device.upload(floats(A, aOff, aSpan), dA, 0);
        device.upload(floats(B, bOff, bSpan), dB, 0);
        if (beta != 0f || ldc != N) {
            device.upload(floats(C, cOff, cSpan), dC, 0); // beta·C is read, or the row padding kept
        } else if (poison) {
            device.fill32(dC, POISON, cSpan);
        }
        gemmOnDevice(transA, transB, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc);
        device.download(dC, 0, floats(C, cOff, cSpan));
    }

    /** {@link #gemm} on device buffers (M, N, K ≥ 1). */
    void gemmOnDevice(boolean transA, boolean transB, int M, int N, int K, float alpha, DeviceBuffer A, int lda,
                      DeviceBuffer B, int ldb, float beta, DeviceBuffer C, int ldc) {
        if (math == GemmMath.FP32) {
            blas.sgemmRowMajor(transA, transB, M, N, K, alpha, A.address(), lda, B.address(), ldb, beta, C.address(), ldc);
        } else {
            blas.gemmRowMajor(math, transA, transB, M, N, K, alpha, A.address(), lda, B.address(), ldb, beta,
                    C.address(), ldc);
        }
    }

    private static long span(int rows, int cols, int ld) {
        return (long) (rows - 1) * ld + cols;
    }

    // ---------------------------------------------------------------- RMSNorm

    /** One block per row, the sum of squares in double. x, y: [M, C]; y may be x. */
    @Override
    public synchronized void rmsNorm(float[] x, float[] weight, float eps, int M, int C, float[] y) {
        OpsChecks.rmsNorm(x, weight, M, C, y);
        if (M == 0 || C == 0) {
            return;
        }
        long n = (long) M * C;
        DeviceBuffer dx = slot(0, n * 4), dw = slot(1, C * 4L), dy = slot(2, n * 4);
        device.upload(floats(x, 0, n), dx, 0);
        device.upload(floats(weight, 0, C), dw, 0);
        poison(dy, n);
        rmsNormOnDevice(dx, dw, eps, M, C, dy);
        device.download(dy, 0, floats(y, 0, n));
    }

    /** {@link #rmsNorm} on device buffers (queued on the stream, not waited for). */
    void rmsNormOnDevice(DeviceBuffer x, DeviceBuffer weight, float eps, int M, int C, DeviceBuffer y) {
        rmsNorm.launch(M, 1, rowThreads(C), 0, x, weight, y, C, eps);
    }

    // ---------------------------------------------------------------- RoPE

    /**
     * Rotate-half RoPE in place on x: [T, heads, D]. The cos/sin rows of each token's position
     * are gathered here into [T, D/2] tables, so only what is used travels to the GPU.
     */
    @Override
    public synchronized void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
        OpsChecks.rope(x, T, heads, D, positions, cos, sin);
        int half = D / 2;
        long pairs = (long) T * heads * half;
        if (pairs == 0) {
            return;
        }
        float[] cosT = new float[T * half], sinT = new float[T * half]; // [T, D/2]
        for (int t = 0; t < T; t++) {
            System.arraycopy(cos, positions[t] * half, cosT, t * half, half);
            System.arraycopy(sin, positions[t] * half, sinT, t * half, half);
        }
        long n = (long) T * heads * D;
        DeviceBuffer dx = slot(0, n * 4), dc = slot(1, cosT.length * 4L), ds = slot(2, sinT.length * 4L);
        device.upload(floats(x, 0, n), dx, 0);
        device.upload(MemorySegment.ofArray(cosT), dc, 0);
        device.upload(MemorySegment.ofArray(sinT), ds, 0);
        ropeOnDevice(dx, T, heads, D, dc, ds);
        device.download(dx, 0, floats(x, 0, n));
    }

    /** {@link #rope} on device buffers; cosT, sinT: [T, D/2], the rows of each token's position. */
    void ropeOnDevice(DeviceBuffer x, int T, int heads, int D, DeviceBuffer cosT, DeviceBuffer sinT) {
        long pairs = (long) T * heads * (D / 2);
        rope.launch(blocks(pairs, 256), 1, 256, 0, x, cosT, sinT, T, heads, D);
    }

    // ---------------------------------------------------------------- attention

    /** Shared memory of one attention block for head dim D: Q, O, K (padded), V and score tiles. */
    static int attentionSmem(int D) {
        long floats = 2L * ATT_BQ * D + (long) ATT_BK * (D + 1) + (long) ATT_BK * D + ATT_BQ * (ATT_BK + 1);
        return (int) Math.min(Integer.MAX_VALUE, floats * 4);
    }

    /**
     * Causal attention with grouped KV heads, flash-style: blocks of 16 query rows of one head
     * stream the visible keys in tiles of 32 with an online softmax. q, out: [Tq, H, D]; k, v: [Tk, Hkv, D].
     */
    @Override
    public synchronized void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D,
                                       float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, 0, out);
    }

    /** With a sliding window (≤ 0: none): the kernel masks the keys before each query's window and skips their tiles. */
    @Override
    public synchronized void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D,
                                       int window, float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, out);
    }

    /** With the scores' scale and a soft-cap c &gt; 0 (c·tanh(s/c) before the mask and the softmax). */
    @Override
    public synchronized void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D,
                                       int window, double scale, float softcap, float[] out) {
        OpsChecks.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
        if (Tq == 0 || D == 0) {
            return;
        }
        long nq = (long) Tq * H * D, nkv = (long) Tk * Hkv * D;
        DeviceBuffer dq = slot(0, nq * 4), dk = slot(1, nkv * 4), dv = slot(2, nkv * 4), dout = slot(3, nq * 4);
        device.upload(floats(q, 0, nq), dq, 0);
        device.upload(floats(k, 0, nkv), dk, 0);
        device.upload(floats(v, 0, nkv), dv, 0);
        poison(dout, nq);
        attentionOnDevice(dq, dk, dv, Tq, Tk, H, Hkv, D, window, scale, softcap, dout);
        device.download(dout, 0, floats(out, 0, nq));
    }

    /** {@link #attention} on device buffers (Tq ≥ 1, D ≥ 1). */
    void attentionOnDevice(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, int Tq, int Tk, int H, int Hkv, int D,
                           int window, DeviceBuffer out) {
        attentionOnDevice(q, k, v, Tq, Tk, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, out);
    }

    private void attentionOnDevice(DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, int Tq, int Tk, int H, int Hkv, int D,
                                   int window, double scale, float softcap, DeviceBuffer out) {
        attention.launch((Tq + ATT_BQ - 1) / ATT_BQ, H, ATT_THREADS, attentionSmem(D),
                q, k, v, out, Tq, Tk, H, Hkv, D, window > 0 && window < Tk ? window : 0, (float) scale, softcap);
    }

    // ---------------------------------------------------------------- SwiGLU

    /** out[i] = silu(gate[i]) · up[i]; out may be gate. */
    @Override
    public synchronized void swiglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.swiglu(gate, up, n, out);
        if (n == 0) {
            return;
        }
        DeviceBuffer dg = slot(0, n * 4L), du = slot(1, n * 4L), dout = slot(2, n * 4L);
        device.upload(floats(gate, 0, n), dg, 0);
        device.upload(floats(up, 0, n), du, 0);
        poison(dout, n);
        swigluOnDevice(dg, du, n, dout);
        device.download(dout, 0, floats(out, 0, n));
    }

    /** out[i] = gelu_tanh(gate[i]) · up[i] (GeGLU); out may be gate. */
    @Override
    public synchronized void geglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.geglu(gate, up, n, out);
        if (n == 0) {
            return;
        }
        DeviceBuffer dg = slot(0, n * 4L), du = slot(1, n * 4L), dout = slot(2, n * 4L);
        device.upload(floats(gate, 0, n), dg, 0);
        device.upload(floats(up, 0, n), du, 0);
        poison(dout, n);
        geglu.launch(blocks(n, 256), 1, 256, 0, dg, du, dout, (long) n);
        device.download(dout, 0, floats(out, 0, n));
    }

    /** {@link #swiglu} on device buffers. */
    void swigluOnDevice(DeviceBuffer gate, DeviceBuffer up, long n, DeviceBuffer out) {
        swiglu.launch(blocks(n, 256), 1, 256, 0, gate, up, out, n);
    }

    // ---------------------------------------------------------------- crossEntropy

    /** One block per row: max, Σ exp in double, nll = max + log Σ − logit[target]. logits: [M, V]. */
    @Override
    public synchronized void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
        OpsChecks.crossEntropy(logits, M, V, targets, nll);
        if (M == 0) {
            return;
        }
        long n = (long) M * V;
        DeviceBuffer dl = slot(0, n * 4), dt = slot(1, M * 4L), dn = slot(2, M * 8L);
        device.upload(floats(logits, 0, n), dl, 0);
        device.upload(MemorySegment.ofArray(targets).asSlice(0, M * 4L), dt, 0);
        poison(dn, 2L * M);
        crossEntropyOnDevice(dl, M, V, dt, dn);
        device.download(dn, 0, MemorySegment.ofArray(nll).asSlice(0, M * 8L));
    }

    /** {@link #crossEntropy} on device buffers; targets int32 [M], nll float64 [M]. */
    void crossEntropyOnDevice(DeviceBuffer logits, int M, int V, DeviceBuffer targets, DeviceBuffer nll) {
        crossEntropy.launch(M, 1, rowThreads(V), 0, logits, targets, nll, V);
    }

    // ---------------------------------------------------------------- helpers

    /** Threads for one block per row of {@code C} elements: a multiple of 32, at most 1024. */
    private static int rowThreads(int C) {
        return Math.min(1024, Math.max(32, (C + 31) / 32 * 32));
    }

    /** Blocks for a grid-stride loop over n elements. */
    private static int blocks(long n, int threads) {
        return (int) Math.max(1, Math.min(1L << 20, (n + threads - 1) / threads));
    }

    private static MemorySegment floats(float[] a, long off, long n) {
        return MemorySegment.ofArray(a).asSlice(off * 4, n * 4);
    }

    private void poison(DeviceBuffer b, long words) {
        if (poison) {
            device.fill32(b, POISON, words);
        }
    }

    /** The buffer of argument position {@code i}, at least {@code bytes} large (grown by half again). */
    private DeviceBuffer slot(int i, long bytes) {
        if (closed) {
            throw new IllegalStateException("CudaOps used after close");
        }
        DeviceBuffer b = slots[i];
        if (b == null || b.bytes() < bytes) {
            long size = Math.max(bytes, b == null ? 0 : b.bytes() + b.bytes() / 2);
            size = (size + 4095) & ~4095L;
            if (b != null) {
                device.synchronize(); // queued work may still read the old buffer
                b.close();
                slots[i] = null;
            }
            slots[i] = device.alloc(size);
        }
        return slots[i];
    }

    /** Frees the buffers, the module, the cuBLAS handle and the device's stream and context. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            device.synchronize();
            if (deviceOps != null) {
                deviceOps.close();
                deviceOps = null;
            }
            for (int i = 0; i < slots.length; i++) {
                if (slots[i] != null) {
                    slots[i].close();
                    slots[i] = null;
                }
            }
            module.close();
            blas.close();
        } finally {
            device.close();
        }
    }
}
