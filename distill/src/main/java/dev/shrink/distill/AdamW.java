package dev.shrink.distill;

/**
 * AdamW (Loshchilov &amp; Hutter 2019, "Decoupled Weight Decay Regularization") as
 * {@code torch.optim.AdamW} computes it (single-tensor path, amsgrad off), per element, with t the
 * 1-based step:
 *
 * <pre>
 * p ← p · (1 − lr · λ)                       decoupled weight decay
 * m ← m + (g − m) · (1 − β1)                 first moment (torch's lerp)
 * v ← v · β2 + (1 − β2) · g²                 second moment
 * p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 * </pre>
 *
 * Defaults are torch's: β1 0.9, β2 0.999, ε 1e-8, λ 0.01, applied to every parameter (torch's
 * default when all parameters are in one group, norms and embeddings included).
 */
public final class AdamW {
    private AdamW() {
    }

    /**
     * The optimizer's constants.
     *
     * @param beta1       decay of the first moment
     * @param beta2       decay of the second moment
     * @param eps         added to the denominator
     * @param weightDecay λ, decoupled
     */
    public record Hyper(double beta1, double beta2, double eps, double weightDecay) {
        /** torch.optim.AdamW's defaults. */
        public static final Hyper TORCH = new Hyper(0.9, 0.999, 1e-8, 0.01);

        public Hyper {
            if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
                throw new IllegalArgumentException("AdamW betas must be in [0, 1): " + beta1 + ", " + beta2);
            }
            if (!(eps > 0) || !(weightDecay >= 0)) {
                throw new IllegalArgumentException("AdamW eps must be positive and weight decay non-negative");
            }
        }
    }

    /**
     * One step's numbers, derived once for all parameters.
     *
     * @param lr    this step's learning rate
     * @param t     the 1-based step number (for the bias corrections)
     */
    public record Step(Hyper h, double lr, int t) {
        /** 1 − lr·λ. */
        public double decay() {
            return 1 - lr * h.weightDecay();
        }

        /** lr / (1 − β1^t). */
        public double stepSize() {
            return lr / (1 - Math.pow(h.beta1(), t));
        }

        /** √(1 − β2^t). */
        public double bias2Sqrt() {
            return Math.sqrt(1 - Math.pow(h.beta2(), t));
        }
    }
}
