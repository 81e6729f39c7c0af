package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;

/**
 * Pruning masks on the GPU (masks.cu), the device twins of {@code dev.shrink.prune.Masks}' selections
 * with the same results, ties included (of equal scores the earlier index is kept, as torch.topk
 * keeps it): the k lowest scores of every row, the {@code prune} lowest of every group of m inputs
 * (N:M), the k lowest of a whole matrix; and the scores themselves (magnitude |W|, Wanda
 * |W|·‖X_j‖₂). Device-address methods queue work on the stream; the array methods upload, run and
 * download (for a stage whose weights live on the host). Masks are bytes, 1 = pruned.
 */
public final class CudaMasks implements AutoCloseable {
    private static final int THREADS = 256;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel scores, rowLowest, groupLowest, count, mark;

    public CudaMasks(CudaDevice device) {
        this.device = device;
        module = device.module("masks.cu");
        scores = module.kernel("mask_scores");
        rowLowest = module.kernel("mask_row_lowest");
        groupLowest = module.kernel("mask_group_lowest");
        count = module.kernel("mask_count");
        mark = module.kernel("mask_mark");
    }

    /** S = |W| (norm = 0) or |W[n, j]|·norm[j] (norm: K doubles, ‖X_j‖₂), n = N·K floats. */
    public void scores(long W, long norm, long S, long n, int K) {
        scores.launch(DeviceOps.blocks(n, THREADS), 1, THREADS, 0, W, norm, S, n, K);
    }

    /** pruned [N, K] = the k lowest of every row of S [N, K]. */
    public void lowestPerRow(long S, long pruned, int N, int K, int k) {
        if (k < 0 || k > K) {
            throw new IllegalArgumentException("k = " + k + " of a row of " + K);
        }
        rowLowest.launch(N, 1, THREADS, 0, S, pruned, N, K, k);
    }

    /** pruned = the {@code prune} lowest of every group of m consecutive scores (N:M); n a multiple of m, m ≤ 64. */
    public void lowestPerGroup(long S, long pruned, long n, int m, int prune) {
        if (m < 1 || m > 64 || n % m != 0 || prune < 0 || prune > m) {
            throw new IllegalArgumentException("groups of " + m + " (pruning " + prune + ") over " + n + " scores");
        }
        groupLowest.launch(DeviceOps.blocks(n / m, THREADS), 1, THREADS, 0, S, pruned, n / m, m, prune);
    }

    /** pruned = the k lowest of all n scores (n &lt; 2^32): a radix select, 64 counting passes. */
    public void lowestInMatrix(long S, long pruned, long n, long k) {
        if (k < 0 || k > n || n >= 1L << 32) {
            throw new IllegalArgumentException("k = " + k + " of " + n + " scores");
        }
        if (k == 0 || k == n) {
            mark.launch(DeviceOps.blocks(n, THREADS), 1, THREADS, 0, S, n, 0L, k == n ? 1 : -1, pruned);
            return;
        }
        long prefix = 0, rank = k;
        long[] c = new long[1];
        try (DeviceBuffer counter = device.alloc(8)) {
            for (int b = 63; b >= 0; b--) {
                long high = b == 63 ? 0L : -1L << (b + 1);
                device.fill32(counter, 0, 2);
                count.launch(Math.min(4096, DeviceOps.blocks(n, THREADS)), 1, THREADS, 0, S, n, prefix, high, b, counter);
                device.download(counter, 0, MemorySegment.ofArray(c));
                if (c[0] < rank) {
                    prefix |= 1L << b;
                    rank -= c[0];
                }
            }
        }
        mark.launch(DeviceOps.blocks(n, THREADS), 1, THREADS, 0, S, n, prefix, 0, pruned);
    }

    // ------------------------------------------------------------ host arrays

    /** Which selection a host-array call makes. */
    public enum Kind { ROW, GROUP, MATRIX }

    /**
     * The mask of host scores S [N, K]: ROW the {@code k} lowest per row; GROUP the {@code k} lowest of
     * every group of {@code m}; MATRIX the {@code k} lowest overall. Uploads, runs, downloads.
     */
    public boolean[] mask(float[] S, int N, int K, Kind kind, long k, int m) {
        long n = (long) N * K;
        if (S.length != n) {
            throw new IllegalArgumentException(S.length + " scores for [" + N + ", " + K + "]");
        }
        try (DeviceBuffer dS = device.alloc(Math.max(4, n * 4)); DeviceBuffer dP = device.alloc(Math.max(1, n))) {
            device.upload(MemorySegment.ofArray(S), dS, 0);
            run(dS.address(), dP.address(), N, K, kind, k, m);
            return download(dP, n);
        }
    }

    /**
     * The mask of scores computed on the device from host weights W [N, K]: |W| (norm null) or
     * Wanda's |W|·norm[j]; then {@link #mask}'s selection.
     */
    public boolean[] mask(float[] W, double[] norm, int N, int K, Kind kind, long k, int m) {
        long n = (long) N * K;
        if (W.length != n || (norm != null && norm.length != K)) {
            throw new IllegalArgumentException(W.length + " weights and " + (norm == null ? 0 : norm.length)
                    + " norms for [" + N + ", " + K + "]");
        }
        try (DeviceBuffer dW = device.alloc(Math.max(4, n * 4)); DeviceBuffer dS = device.alloc(Math.max(4, n * 4));
             DeviceBuffer dN = device.alloc(Math.max(8, K * 8L)); DeviceBuffer dP = device.alloc(Math.max(1, n))) {
            device.upload(MemorySegment.ofArray(W), dW, 0);
            if (norm != null) {
                device.upload(MemorySegment.ofArray(norm), dN, 0);
            }
            scores(dW.address(), norm == null ? 0L : dN.address(), dS.address(), n, K);
            run(dS.address(), dP.address(), N, K, kind, k, m);
            return download(dP, n);
        }
    }

    private void run(long S, long P, int N, int K, Kind kind, long k, int m) {
        switch (kind) {
            case ROW -> lowestPerRow(S, P, N, K, Math.toIntExact(k));
            case GROUP -> {
                if (K % m != 0) {
                    throw new IllegalArgumentException("in-features " + K + " are not a multiple of the group " + m);
                }
                lowestPerGroup(S, P, (long) N * K, m, Math.toIntExact(k));
            }
            case MATRIX -> lowestInMatrix(S, P, (long) N * K, k);
        }
    }

    private boolean[] download(DeviceBuffer dP, long n) {
        byte[] b = new byte[Math.toIntExact(n)];
        device.download(dP, 0, MemorySegment.ofArray(b));
        boolean[] out = new boolean[b.length];
        for (int i = 0; i < b.length; i++) {
            out[i] = b[i] != 0;
        }
        return out;
    }

    @Override
    public void close() {
        module.close();
    }
}
