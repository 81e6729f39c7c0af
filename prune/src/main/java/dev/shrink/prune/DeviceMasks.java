package dev.shrink.prune;

import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.kernels.cuda.CudaMasks;
import dev.shrink.kernels.cuda.CudaOps;

/**
 * {@link Masks#mask} and {@link Wanda#mask} on the GPU ({@link CudaMasks}, masks.cu): the scores and
 * the selection (k lowest per row, per N:M group, or per matrix) computed on the device, with the
 * CPU's results, ties included. {@link PruneStage} uses it on the cuda backend; a global (cross-matrix)
 * selection stays on the CPU ({@link Masks#lowestK}).
 */
final class DeviceMasks implements AutoCloseable {
    private final CudaMasks masks;

    DeviceMasks(CudaOps cuda) {
        masks = new CudaMasks(cuda.device());
    }

    /** The mask of W [N, K]: magnitude scores (sumSq null) or Wanda's (sumSq: Σ x_j² over the calibration tokens). */
    boolean[] mask(float[] W, int N, int K, double[] sumSq, SparsityPattern pattern, Scope scope) {
        double[] norm = null;
        if (sumSq != null) {
            if (sumSq.length != K) {
                throw new IllegalArgumentException("sumSq of " + sumSq.length + " for [" + N + ", " + K + "]");
            }
            norm = new double[K]; // ‖X_j‖₂, as Wanda.scores computes it
            for (int j = 0; j < K; j++) {
                if (!(sumSq[j] >= 0) || Double.isInfinite(sumSq[j])) {
                    throw new IllegalArgumentException("input channel " + j + " has sum of squares " + sumSq[j]);
                }
                norm[j] = Math.sqrt(sumSq[j]);
            }
        }
        return switch (pattern) {
            case SparsityPattern.NofM nm -> {
                if (nm.m() > 64) {
                    yield Masks.mask(sumSq == null ? Masks.magnitude(W) : Wanda.scores(W, N, K, sumSq), N, K, pattern, scope);
                }
                if (K % nm.m() != 0) {
                    throw new IllegalArgumentException("groups of " + nm.m() + " over in-features " + K);
                }
                yield masks.mask(W, norm, N, K, CudaMasks.Kind.GROUP, nm.prunedPerGroup(), nm.m());
            }
            case SparsityPattern.Unstructured u -> switch (scope) {
                case LAYER -> masks.mask(W, norm, N, K, CudaMasks.Kind.MATRIX, Masks.count(u.ratio(), (long) N * K), 0);
                case ROW -> masks.mask(W, norm, N, K, CudaMasks.Kind.ROW, Masks.count(u.ratio(), K), 0);
                case GLOBAL -> throw new IllegalArgumentException("a global mask spans several matrices: use lowestK");
            };
        };
    }

    @Override
    public void close() {
        masks.close();
    }
}
