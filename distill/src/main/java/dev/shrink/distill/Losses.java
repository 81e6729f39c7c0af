package dev.shrink.distill;

/**
 * The distillation losses of one row of logits, in double, with their gradients w.r.t. the
 * student's logits (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"; the
 * reverse KL of MiniLLM, Gu et al. 2024). With s = z_s / T and t = z_t / T,
 * p = softmax(t) (teacher), q = softmax(s) (student):
 *
 * <pre>
 * KL(p ‖ q)  = Σ_j p_j (log p_j − log q_j)         ∂/∂z_s,j = (q_j − p_j) / T
 * KL(q ‖ p)  = Σ_j q_j (log q_j − log p_j)         ∂/∂z_s,j = q_j (log q_j − log p_j − KL(q ‖ p)) / T
 * CE(y)      = logsumexp(z_s) − z_s,y  (T = 1)     ∂/∂z_s,j = softmax(z_s)_j − [j = y]
 * loss       = α · T² · KL + (1 − α) · CE          (T² keeps the gradient's size independent of T)
 * </pre>
 *
 * Both implementations of {@link TrainOps#distillLoss} call {@link #row} (float32 logits are
 * widened to double first), so the float64 finite-difference check covers the code that trains.
 */
public final class Losses {
    private Losses() {
    }

    /** Which divergence the KL part measures. */
    public enum Kind {
        /** KL(teacher ‖ student): mean-seeking, the classic distillation loss. */
        KL,
        /** KL(student ‖ teacher): mode-seeking (MiniLLM). */
        REVERSE_KL;

        /** "kl" or "reverse-kl", as the CLI and recipes spell it. */
        public String label() {
            return this == KL ? "kl" : "reverse-kl";
        }

        /** The kind a CLI/recipe label names, or null. */
        public static Kind parse(String label) {
            return switch (label) {
                case "kl" -> KL;
                case "reverse-kl" -> REVERSE_KL;
                default -> null;
            };
        }
    }

    /**
     * Unscaled sums over rows.
     *
     * @param kl     Σ T² · D over the rows that computed a divergence
     * @param klRows how many rows that is
     * @param ce     Σ CE over the rows with a target
     * @param ceRows how many rows that is
     */
    public record Sums(double kl, long klRows, double ce, long ceRows) {
        public static final Sums ZERO = new Sums(0, 0, 0, 0);

        public Sums plus(Sums o) {
            return new Sums(kl + o.kl, klRows + o.klRows, ce + o.ce, ceRows + o.ceRows);
        }
    }

    /** Scratch of one thread: rows of V doubles. */
    static final class Scratch {
        final double[] logQ;  // log softmax(s), student
        final double[] q;     // softmax(s)
        final double[] logP;  // log softmax(t), teacher
        final double[] p;     // softmax(t)
        final double[] grad;  // ∂ loss / ∂ z_s

        Scratch(int V) {
            logQ = new double[V];
            q = new double[V];
            logP = new double[V];
            p = new double[V];
            grad = new double[V];
        }
    }

    /**
     * One row: the gradient {@code klScale · ∂(T²·D)/∂z_s + ceScale · ∂CE/∂z_s} into
     * {@code sc.grad} (overwritten), and the unscaled {@code T²·D} and CE into out[0], out[1].
     *
     * @param zs      student logits [V]
     * @param zt      teacher logits [V], or null when klScale == 0
     * @param target  the next token, or −1 (no CE for this row)
     */
    static void row(double[] zs, double[] zt, int target, Kind kind, double T, double klScale, double ceScale,
                    Scratch sc, double[] out) {
        int V = zs.length;
        double[] g = sc.grad;
        out[0] = 0;
        out[1] = 0;
        boolean studentAtT = false;
        if (klScale != 0) {
            logSoftmax(zs, 1 / T, sc.logQ, sc.q);
            logSoftmax(zt, 1 / T, sc.logP, sc.p);
            studentAtT = true;
            double d = 0;
            if (kind == Kind.KL) {
                for (int j = 0; j < V; j++) {
                    double p = sc.p[j];
                    if (p != 0) { // 0 · log 0 = 0; a NaN still propagates
                        d += p * (sc.logP[j] - sc.logQ[j]);
                    }
                    g[j] = klScale * T * (sc.q[j] - p); // T² · (q − p) / T
                }
            } else {
                for (int j = 0; j < V; j++) {
                    double q = sc.q[j];
                    if (q != 0) {
                        d += q * (sc.logQ[j] - sc.logP[j]);
                    }
                }
                for (int j = 0; j < V; j++) {
                    g[j] = klScale * T * sc.q[j] * (sc.logQ[j] - sc.logP[j] - d);
                }
            }
            out[0] = T * T * d;
        } else {
            java.util.Arrays.fill(g, 0);
        }
        if (ceScale != 0 && target >= 0) {
            if (target >= V) {
                throw new IllegalArgumentException("target " + target + " outside the vocabulary of " + V);
            }
            if (!(studentAtT && T == 1)) {
                logSoftmax(zs, 1, sc.logQ, sc.q);
            }
            out[1] = -sc.logQ[target];
            for (int j = 0; j < V; j++) {
                g[j] += ceScale * (sc.q[j] - (j == target ? 1 : 0));
            }
        }
    }

    /** logOut = log softmax(z · scale) and probOut = softmax(z · scale), with the max subtracted; one exp per element. */
    static void logSoftmax(double[] z, double scale, double[] logOut, double[] probOut) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : z) {
            max = Math.max(max, v * scale);
        }
        double sum = 0;
        for (int j = 0; j < z.length; j++) {
            double e = Math.exp(z[j] * scale - max);
            probOut[j] = e;
            sum += e;
        }
        double lse = max + Math.log(sum), inv = 1 / sum;
        for (int j = 0; j < z.length; j++) {
            logOut[j] = z[j] * scale - lse;
            probOut[j] *= inv;
        }
    }
}
