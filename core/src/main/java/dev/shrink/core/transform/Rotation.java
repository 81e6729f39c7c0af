package dev.shrink.core.transform;

import java.util.Random;

/**
 * A seeded orthogonal C×C matrix Q, applied to row vectors (v ← v·Q) in double with a fixed loop
 * order, so that the same seed gives the same bits on every machine (no thread- or vector-width
 * dependent sums).
 *
 * <p>When C = m·2^k with a known Hadamard matrix of order m (1, or q + 1 for a prime q ≡ 3 mod 4 by
 * Paley's first construction: 4, 8, 12, 20, 24, 32, 44, 48, ...), Q is the randomized Hadamard
 * matrix diag(s)·(H_m ⊗ H_{2^k})/√C with random signs s ∈ {±1}^C drawn from {@code seed} (QuaRot's
 * choice: it spreads outliers evenly over all channels, and v·Q costs O(C·(m + k)) by the fast
 * Walsh–Hadamard transform). Otherwise Q is a random orthogonal matrix: the Q factor of a seeded
 * Gaussian matrix with R's diagonal made positive (Haar-distributed), applied densely.
 */
public final class Rotation {
    private final int C;
    private final long seed;
    private final int m;            // Hadamard: order of the small factor (1 for a pure power of two); 0: dense
    private final double[] signs;   // Hadamard: s [C]
    private final double[] hm;      // Hadamard: H_m [m, m], entries ±1
    private final double[] dense;   // random orthogonal: Q [C, C]
    private final double scale;     // 1/√C (Hadamard)

    private Rotation(int C, long seed, int m, double[] signs, double[] hm, double[] dense) {
        this.C = C;
        this.seed = seed;
        this.m = m;
        this.signs = signs;
        this.hm = hm;
        this.dense = dense;
        this.scale = 1.0 / Math.sqrt(C);
    }

    /** The rotation of size {@code C} for {@code seed}: randomized Hadamard when C allows it, else random orthogonal. */
    public static Rotation of(int C, long seed) {
        if (C < 1) {
            throw new IllegalArgumentException("rotation size must be positive: " + C);
        }
        int m = hadamardFactor(C);
        Random rnd = new Random(seed);
        if (m > 0) {
            double[] s = new double[C];
            for (int i = 0; i < C; i++) {
                s[i] = rnd.nextBoolean() ? 1.0 : -1.0;
            }
            return new Rotation(C, seed, m, s, hadamard(m), null);
        }
        return new Rotation(C, seed, 0, null, null, randomOrthogonal(C, rnd));
    }

    /** A random orthogonal matrix of size {@code C} even when a Hadamard one exists (tests, comparisons). */
    public static Rotation randomOrthogonal(int C, long seed) {
        return new Rotation(C, seed, 0, null, null, randomOrthogonal(C, new Random(seed)));
    }

    public int size() {
        return C;
    }

    public long seed() {
        return seed;
    }

    /** Whether Q is a randomized Hadamard matrix (else a dense random orthogonal one). */
    public boolean hadamard() {
        return m > 0;
    }

    /** "hadamard 12x32" (H_12 ⊗ H_32), "hadamard 1x4096", or "random-orthogonal". */
    public String kind() {
        return m > 0 ? "hadamard " + m + "x" + (C / m) : "random-orthogonal";
    }

    /** v[off + i·stride], i < C, ← (v·Q)[i]. */
    public void apply(double[] v, int off, int stride) {
        double[] x = new double[C];
        for (int i = 0; i < C; i++) {
            x[i] = v[off + i * stride];
        }
        double[] y = applyContiguous(x);
        for (int i = 0; i < C; i++) {
            v[off + i * stride] = y[i];
        }
    }

    /** x·Q for a row vector x [C] (x may be overwritten). */
    double[] applyContiguous(double[] x) {
        if (m == 0) {
            double[] y = new double[C];
            for (int i = 0; i < C; i++) {
                double xi = x[i];
                if (xi == 0) {
                    continue;
                }
                int row = i * C;
                for (int j = 0; j < C; j++) {
                    y[j] += xi * dense[row + j];
                }
            }
            return y;
        }
        int n = C / m;
        for (int i = 0; i < C; i++) {
            x[i] *= signs[i];
        }
        // x·(H_m ⊗ H_n), index i = a·n + b: first H_n (Sylvester, symmetric) on each contiguous block of n ...
        for (int a = 0; a < m; a++) {
            int base = a * n;
            for (int h = 1; h < n; h <<= 1) {
                for (int i = 0; i < n; i += h << 1) {
                    for (int j = i; j < i + h; j++) {
                        double p = x[base + j], q = x[base + j + h];
                        x[base + j] = p + q;
                        x[base + j + h] = p - q;
                    }
                }
            }
        }
        // ... then H_m across the blocks: y[a'·n + b] = Σ_a x[a·n + b]·H_m[a, a'].
        double[] y = new double[C];
        if (m == 1) {
            System.arraycopy(x, 0, y, 0, C);
        } else {
            for (int b = 0; b < n; b++) {
                for (int a2 = 0; a2 < m; a2++) {
                    double s = 0;
                    for (int a = 0; a < m; a++) {
                        s += x[a * n + b] * hm[a * m + a2];
                    }
                    y[a2 * n + b] = s;
                }
            }
        }
        for (int i = 0; i < C; i++) {
            y[i] *= scale;
        }
        return y;
    }

    /** Q as a dense row-major [C, C] matrix (row i = e_i·Q). */
    public double[] matrix() {
        double[] q = new double[C * C];
        for (int i = 0; i < C; i++) {
            double[] e = new double[C];
            e[i] = 1;
            System.arraycopy(applyContiguous(e), 0, q, i * C, C);
        }
        return q;
    }

    /**
     * The order m of the Hadamard factor with C = m·2^k (the smallest such m with a known Hadamard
     * matrix: 1, 2, or q + 1 for a prime q ≡ 3 mod 4), or 0 when there is none.
     */
    static int hadamardFactor(int C) {
        int k = Integer.numberOfTrailingZeros(C);
        for (int j = k; j >= 0; j--) {
            int m = C >> j;
            if (m == 1 || (m % 4 == 0 && isPrime(m - 1))) {
                return m;
            }
        }
        return 0;
    }

    private static boolean isPrime(int q) {
        if (q < 2) {
            return false;
        }
        for (int d = 2; (long) d * d <= q; d++) {
            if (q % d == 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * A Hadamard matrix of order m (H·Hᵀ = m·I), row-major: [[1]] for m = 1; Paley's construction I
     * for m = q + 1, q prime ≡ 3 mod 4: H = I + S, S = [[0, 1ᵀ], [−1, J]] with the Jacobsthal matrix
     * J[i][j] = χ(j − i), χ the quadratic character mod q.
     */
    static double[] hadamard(int m) {
        if (m == 1) {
            return new double[] {1};
        }
        int q = m - 1;
        if (m % 4 != 0 || !isPrime(q)) {
            throw new IllegalArgumentException("no Paley Hadamard matrix of order " + m);
        }
        boolean[] square = new boolean[q];
        for (int x = 1; x < q; x++) {
            square[(int) ((long) x * x % q)] = true;
        }
        double[] h = new double[m * m];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < m; j++) {
                double s;
                if (i == 0 && j == 0) {
                    s = 0;
                } else if (i == 0) {
                    s = 1;
                } else if (j == 0) {
                    s = -1;
                } else {
                    int d = Math.floorMod((j - 1) - (i - 1), q);
                    s = d == 0 ? 0 : square[d] ? 1 : -1;
                }
                h[i * m + j] = s + (i == j ? 1 : 0);
            }
        }
        return h;
    }

    /**
     * The Q factor of a C×C matrix of seeded standard normals, by modified Gram–Schmidt on its
     * columns done twice (orthogonal to rounding), with R's diagonal positive.
     */
    private static double[] randomOrthogonal(int C, Random rnd) {
        double[][] col = new double[C][C]; // col[j] = column j
        for (int i = 0; i < C; i++) {
            for (int j = 0; j < C; j++) {
                col[j][i] = rnd.nextGaussian();
            }
        }
        for (int j = 0; j < C; j++) {
            double[] v = col[j];
            for (int pass = 0; pass < 2; pass++) {
                for (int p = 0; p < j; p++) {
                    double[] u = col[p];
                    double d = 0;
                    for (int i = 0; i < C; i++) {
                        d += u[i] * v[i];
                    }
                    for (int i = 0; i < C; i++) {
                        v[i] -= d * u[i];
                    }
                }
            }
            double norm = 0;
            for (int i = 0; i < C; i++) {
                norm += v[i] * v[i];
            }
            norm = Math.sqrt(norm);
            for (int i = 0; i < C; i++) {
                v[i] /= norm;
            }
        }
        double[] q = new double[C * C];
        for (int i = 0; i < C; i++) {
            for (int j = 0; j < C; j++) {
                q[i * C + j] = col[j][i];
            }
        }
        return q;
    }
}
