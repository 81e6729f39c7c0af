package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
 * Transformers", Algorithm 1) on the GPU, the device twin of {@code dev.shrink.gptq.Gptq.quantize}
 * with the same arithmetic (its reference, tested against it):
 * <pre>
 *   H = (2/n)·S, dead inputs (H[d,d] = 0) pinned to 1 and their weights zeroed
 *   Hinv = upper Cholesky factor of (H + λI)⁻¹, λ = damp · mean(diag H), damp raised while it fails
 *   per block of B columns [i1, i2):
 *     per column i:  q_i = quant(w_i);  err = (w_i − q_i) / Hinv[i,i];  W[:, j] −= err · Hinv[i, j]  (j &lt; i2)
 *     then           W[:, i2:] −= Err · Hinv[i1:i2, i2:]                   (cuBLAS, float32)
 * </pre>
 * The Hessian is prepared once per set of linears that share it ({@link #factor}: float64
 * Cholesky and inverse by cuSOLVER), then each linear is quantized from it ({@link #quantize}):
 * the column loop is a kernel with one warp per output row. Only the codes, the group parameters
 * and the loss come back to the host; the weight buffer ends holding the dequantized weights, in
 * place, for the next forward pass.
 *
 * <p>Supported: 2/3/4/8 bits, groups or per-row, sym or asym, act-order (with static groups or
 * not), blocks of at most {@link #MAX_BLOCK} columns; exact zeros of the input are kept, as on
 * the CPU. Not here: the MSE grid search and SparseGPT's pruning (the CPU solver does those).
 * Workspaces grow on demand and are kept until {@link #close()}.
 */
public final class CudaGptq implements AutoCloseable {
    /** Columns per lazy-update block at most (GPTQ_BLOCK in gptq.cu). */
    public static final int MAX_BLOCK = 128;
    /** Rows (warps) per thread block of the column loop. */
    private static final int WARPS = 16;
    /** Raised by this much while the Cholesky factorisation fails, up to {@link #MAX_DAMP} (as on the CPU). */
    public static final double DAMP_STEP = 0.01;
    public static final double MAX_DAMP = 1.0;

    /** The quantization: {@code groupSize} −1 for one group per row; {@code blockSize} ≤ {@link #MAX_BLOCK}. */
    public record Scheme(int bits, int groupSize, boolean sym, int blockSize, boolean staticGroups) {
        public Scheme {
            if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
                throw new IllegalArgumentException("bits must be 2, 3, 4 or 8, got " + bits);
            }
            if (groupSize != -1 && groupSize <= 0) {
                throw new IllegalArgumentException("group size must be −1 or positive, got " + groupSize);
            }
            if (blockSize <= 0 || blockSize > MAX_BLOCK) {
                throw new IllegalArgumentException("block size " + blockSize + " outside 1.." + MAX_BLOCK);
            }
        }

        int maxq() {
            return (1 << bits) - 1;
        }

        int groups(int K) {
            return groupSize == -1 ? 1 : (K + groupSize - 1) / groupSize;
        }
    }

    /** Thrown when even the largest damp leaves H not positive definite. */
    public static final class NotPositiveDefinite extends RuntimeException {
        NotPositiveDefinite(String m) {
            super(m);
        }
    }

    /**
     * A prepared Hessian: H⁻¹'s upper Cholesky factor on the device (in the permuted order with
     * act-order), valid until the next {@link #factor} call.
     *
     * @param perm   act-order's column order (position p holds column perm[p]); null without act-order
     * @param dead   inputs with diag(H) = 0
     * @param damp   the damp fraction finally used
     * @param raised whether it had to be raised
     */
    public record Factor(int K, int[] perm, int dead, double damp, boolean raised, double seconds, long id) {
    }

    /**
     * One linear's outcome, host side, in the original column order.
     *
     * @param codes  [N, K] codes, unsigned bytes
     * @param scales [G, N]
     * @param zeros  [G, N] zero points (integers held in floats)
     * @param gIdx   group of each input column [K]
     * @param loss   Σ (w − q)² / Hinv[i,i]² / 2
     * @param masked weights forced to exact zeros (zero on input, or a dead input)
     */
    public record Result(byte[] codes, float[] scales, float[] zeros, int[] gIdx, double loss, int masked,
                         double seconds) {
    }

    private final DeviceOps ops;
    private final CudaDevice device;
    private final CudaModule module;
    private final CusolverHandle solver;
    private final CudaKernel prepare, diagSum, diagGet, dampCopy, toFloat, permSym, markZeros, permCols, permColsU8,
            unpermCols, unpermColsU8, groupParams, block;
    /** Workspaces, grown on demand. */
    private DeviceBuffer hd, a, hinv, dead, perm, gpos, small, err, codes, wperm, mperm, scales, zeros;
    private long factorId;
    private Factor current;

    /**
     * @throws CudaException when cuSOLVER cannot be loaded or the kernels do not compile
     */
    public CudaGptq(DeviceOps ops) {
        this.ops = ops;
        this.device = ops.device();
        CudaModule m = device.module("gptq.cu");
        CusolverHandle s;
        try {
            s = device.openCusolver();
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
        module = m;
        solver = s;
        prepare = m.kernel("hessian_prepare");
        diagSum = m.kernel("diag_sum");
        diagGet = m.kernel("diag_get");
        dampCopy = m.kernel("damp_copy");
        toFloat = m.kernel("upper_to_float");
        permSym = m.kernel("permute_symmetric");
        markZeros = m.kernel("mark_zeros");
        permCols = m.kernel("permute_cols");
        permColsU8 = m.kernel("permute_cols_u8");
        unpermCols = m.kernel("unpermute_cols");
        unpermColsU8 = m.kernel("unpermute_cols_u8");
        groupParams = m.kernel("group_params");
        block = m.kernel("gptq_block");
        small = device.alloc(64); // [0] int info / counters, [8] double scalar
    }

    /**
     * Prepares H = f·S (S: [K, K] float on the device, e.g. Σ x·xᵀ, f = 2/n) for {@link #quantize}:
     * dead inputs, act-order's permutation (decreasing diag(H), stable), the damped inverse's upper
     * Cholesky factor. Waits for the device (the damp loop reads cuSOLVER's status).
     *
     * @throws NotPositiveDefinite when even damp {@link #MAX_DAMP} fails
     */
    public Factor factor(DeviceBuffer S, int K, float f, double dampPercent, boolean actOrder) {
        long t0 = System.nanoTime();
        long kk = (long) K * K;
        hd = grow(hd, kk * 8);
        a = grow(a, kk * 8);
        hinv = grow(hinv, kk * 4);
        dead = grow(dead, K);
        device.fill32(small, 0, 16);
        prepare.launch(DeviceOps.blocks(kk, 256), 1, 256, 0, S.address(), hd, f, K, dead, small.address());
        int deadCount = readInt(0);

        int[] p = null;
        if (actOrder) {
            // act-order: columns by decreasing diag(H); ties keep their order (a stable sort, as on the CPU)
            diagGet.launch(DeviceOps.blocks(K, 256), 1, 256, 0, hd, K, a);
            double[] diag = new double[K];
            device.download(a, 0, MemorySegment.ofArray(diag));
            Integer[] idx = new Integer[K];
            for (int i = 0; i < K; i++) {
                idx[i] = i;
            }
            Arrays.sort(idx, (x, y) -> Double.compare(diag[y], diag[x]));
            p = new int[K];
            for (int i = 0; i < K; i++) {
                p[i] = idx[i];
            }
            perm = grow(perm, K * 4L);
            device.upload(MemorySegment.ofArray(p), perm, 0);
            permSym.launch(DeviceOps.blocks(kk, 256), 1, 256, 0, hd, a, perm, K);
            DeviceBuffer t = hd;
            hd = a;
            a = t;
        }

        diagSum.launch(1, 1, 1024, 0, hd, K, small.address() + 8);
        double meanDiag = readDouble(8) / K;
        double damp = dampPercent;
        while (true) {
            // torch adds the damp in float32: H[diag] += percdamp * mean(diag)
            float lambda = (float) (damp * (float) meanDiag);
            dampCopy.launch(DeviceOps.blocks(kk, 256), 1, 256, 0, hd, a, K, lambda);
            if (cholesky(K) && inverse(K) && cholesky(K)) {
                break;
            }
            damp += DAMP_STEP;
            if (damp > MAX_DAMP + 1e-9) {
                throw new NotPositiveDefinite("the Hessian stays singular even with damp " + MAX_DAMP);
            }
        }
        // column-major lower = row-major upper: the factor R with (H + λI)⁻¹ = Rᵀ·R, torch's upper=True
        toFloat.launch(DeviceOps.blocks(kk, 256), 1, 256, 0, a, hinv, K);
        device.synchronize();
        current = new Factor(K, p, deadCount, damp, damp > dampPercent + 1e-12, (System.nanoTime() - t0) / 1e9,
                ++factorId);
        return current;
    }

    /** cusolverDnDpotrf on a; false when not positive definite. */
    private boolean cholesky(int K) {
        solver.potrfLower(a, K, small);
        return readInt(0) == 0;
    }

    private boolean inverse(int K) {
        solver.potriLower(a, K, small);
        return readInt(0) == 0;
    }

    /**
     * Quantizes W: [N, K] (float on the device) with the prepared {@code factor}; W ends holding
     * the dequantized weights (original column order). Waits for the device; returns the codes and
     * group parameters.
     */
    public Result quantize(Factor factor, DeviceBuffer W, int N, int K, Scheme s) {
        if (factor != current) {
            throw new IllegalStateException("the factor is stale: prepare it again after another factor() call");
        }
        if (factor.K() != K) {
            throw new IllegalArgumentException("the factor is for " + factor.K() + " inputs; W has " + K);
        }
        if (W.bytes() < (long) N * K * 4) {
            throw new IllegalArgumentException("W holds " + W.bytes() + " bytes; [" + N + ", " + K + "] needs more");
        }
        long t0 = System.nanoTime();
        long nk = (long) N * K;
        int G = s.groups(K), gs = s.groupSize(), maxq = s.maxq(), sym = s.sym() ? 1 : 0;
        codes = grow(codes, nk);
        scales = grow(scales, (long) G * N * 4);
        zeros = grow(zeros, (long) G * N * 4);
        err = grow(err, (long) N * MAX_BLOCK * 4);
        device.fill32(small, 0, 16); // masked count, loss
        int rowsBlocks = (N + WARPS - 1) / WARPS;

        if (gs == -1) { // per-row parameters over the whole row, before anything else
            groupParams.launch(rowsBlocks, 1, WARPS * 32, 0, W, scales, zeros, N, K, 0, K, 0, maxq, sym);
        }
        markZeros.launch(DeviceOps.blocks(nk, 256), 1, 256, 0, W, codes, dead, N, K, small.address());
        int[] p = factor.perm();
        // static groups (with or without act-order): each position uses its original column's group,
        // with parameters fixed on W before any update; otherwise groups follow the positions
        boolean staticGroups = s.staticGroups() && gs != -1;
        int[] groupOfPos = new int[K];
        for (int i = 0; i < K; i++) {
            groupOfPos[i] = gs == -1 ? 0 : staticGroups && p != null ? p[i] / gs : i / gs;
        }
        if (staticGroups) { // parameters of the original groups, fixed before any update
            for (int g = 0; g < G; g++) {
                groupParams.launch(rowsBlocks, 1, WARPS * 32, 0, W, scales, zeros, N, K, g * gs,
                        Math.min(gs, K - g * gs), g, maxq, sym);
            }
            gpos = grow(gpos, K * 4L);
            device.upload(MemorySegment.ofArray(groupOfPos), gpos, 0);
        }
        DeviceBuffer w = W, mark = codes;
        if (p != null) {
            wperm = grow(wperm, nk * 4);
            mperm = grow(mperm, nk);
            permCols.launch(DeviceOps.blocks(nk, 256), 1, 256, 0, W, wperm, perm, N, K);
            permColsU8.launch(DeviceOps.blocks(nk, 256), 1, 256, 0, codes, mperm, perm, N, K);
            w = wperm;
            mark = mperm;
        }

        int B = s.blockSize();
        long gposArg = staticGroups ? gpos.address() : 0L;
        for (int i1 = 0; i1 < K; i1 += B) {
            int i2 = Math.min(i1 + B, K), count = i2 - i1;
            block.launch(rowsBlocks, 1, WARPS * 32, count * count * 4, w, hinv, err, mark, scales, zeros, gposArg,
                    small.address() + 8, N, K, i1, count, gs, maxq, sym);
            if (i2 < K) {
                // W[:, i2:] −= Err[:, 0:count] · Hinv[i1:i2, i2:]   (float32 always: the error feedback)
                ops.gemm(GemmMath.FP32, false, false, N, K - i2, count, -1f, err.address(), count,
                        hinv.floatAt((long) i1 * K + i2), K, 1f, w.floatAt(i2), K);
            }
        }
        if (p != null) { // back to the original column order
            unpermCols.launch(DeviceOps.blocks(nk, 256), 1, 256, 0, wperm, W, perm, N, K);
            unpermColsU8.launch(DeviceOps.blocks(nk, 256), 1, 256, 0, mperm, codes, perm, N, K);
        }

        byte[] c = new byte[Math.toIntExact(nk)];
        float[] sc = new float[G * N], z = new float[G * N];
        device.download(codes, 0, MemorySegment.ofArray(c));
        device.download(scales, 0, MemorySegment.ofArray(sc));
        device.download(zeros, 0, MemorySegment.ofArray(z));
        int masked = readInt(0);
        double loss = readDouble(8);
        int[] gIdx = new int[K];
        for (int i = 0; i < K; i++) {
            gIdx[p == null ? i : p[i]] = groupOfPos[i];
        }
        return new Result(c, sc, z, gIdx, loss, masked, (System.nanoTime() - t0) / 1e9);
    }

    private int readInt(long byteOffset) {
        int[] v = new int[1];
        device.download(small, byteOffset, MemorySegment.ofArray(v));
        return v[0];
    }

    private double readDouble(long byteOffset) {
        double[] v = new double[1];
        device.download(small, byteOffset, MemorySegment.ofArray(v));
        return v[0];
    }

    /** b, or a new buffer of at least {@code bytes} (the old one freed after the queued work). */
    private DeviceBuffer grow(DeviceBuffer b, long bytes) {
        if (b != null && b.bytes() >= bytes) {
            return b;
        }
        if (b != null) {
            device.synchronize();
            b.close();
        }
        return device.alloc(Math.max(bytes, 4));
    }

    /** Bytes of device memory the workspaces hold now. */
    public long workspaceBytes() {
        long t = 0;
        for (DeviceBuffer b : new DeviceBuffer[] {hd, a, hinv, dead, perm, gpos, small, err, codes, wperm, mperm,
                scales, zeros}) {
            t += b == null ? 0 : b.bytes();
        }
        return t;
    }

    @Override
    public void close() {
        device.synchronize();
        for (DeviceBuffer b : new DeviceBuffer[] {hd, a, hinv, dead, perm, gpos, small, err, codes, wperm, mperm,
                scales, zeros}) {
            if (b != null) {
                b.close();
            }
        }
        solver.close();
        module.close();
    }
}
