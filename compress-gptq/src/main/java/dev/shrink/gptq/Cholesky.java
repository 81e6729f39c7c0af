package dev.shrink.gptq;

/**
 * The dense symmetric positive-definite algebra GPTQ needs, in float64 on row-major [n, n]
 * arrays: a Cholesky factor, the inverse from it, and the upper factor of that inverse.
 * Computed in double so that a float32 Hessian of a few thousand columns stays well conditioned.
 */
public final class Cholesky {
    private Cholesky() {
    }

    /**
     * In place: A (symmetric, lower triangle read) becomes L, lower triangular with A = L·Lᵀ; the
     * strict upper triangle is zeroed. Returns false when A is not positive definite.
     */
    public static boolean factorLower(double[] A, int n) {
        for (int j = 0; j < n; j++) {
            int rj = j * n;
            double d = A[rj + j];
            for (int k = 0; k < j; k++) {
                d -= A[rj + k] * A[rj + k];
            }
            if (!(d > 0) || Double.isNaN(d)) {
                return false;
            }
            double ljj = Math.sqrt(d);
            A[rj + j] = ljj;
            double inv = 1.0 / ljj;
            for (int i = j + 1; i < n; i++) {
                int ri = i * n;
                double s = A[ri + j];
                for (int k = 0; k < j; k++) {
                    s -= A[ri + k] * A[rj + k];
                }
                A[ri + j] = s * inv;
            }
        }
        for (int i = 0; i < n; i++) {
            for (int j = i + 1; j < n; j++) {
                A[i * n + j] = 0;
            }
        }
        return true;
    }

    /** (L·Lᵀ)⁻¹ from the lower factor L: X = L⁻ᵀ·L⁻¹, a new array. */
    public static double[] inverseFromLower(double[] L, int n) {
        // Linv = L⁻¹ (lower), row by row: Linv[i] = (e_i − Σ_{k<i} L[i][k]·Linv[k]) / L[i][i];
        // row k of Linv is zero past column k, so each update is a contiguous axpy.
        double[] Linv = new double[n * n];
        for (int i = 0; i < n; i++) {
            int ri = i * n;
            Linv[ri + i] = 1.0;
            for (int k = 0; k < i; k++) {
                double a = L[ri + k];
                if (a == 0) {
                    continue;
                }
                int rk = k * n;
                for (int j = 0; j <= k; j++) {
                    Linv[ri + j] -= a * Linv[rk + j];
                }
            }
            double inv = 1.0 / L[ri + i];
            for (int j = 0; j <= i; j++) {
                Linv[ri + j] *= inv;
            }
        }
        // X = Linvᵀ · Linv: X[i][j] = Σ_{k ≥ max(i,j)} Linv[k][i] · Linv[k][j]
        double[] X = new double[n * n];
        for (int k = 0; k < n; k++) {
            int rk = k * n;
            for (int i = 0; i <= k; i++) {
                double a = Linv[rk + i];
                if (a == 0) {
                    continue;
                }
                int ri = i * n;
                for (int j = 0; j <= i; j++) {
                    X[ri + j] += a * Linv[rk + j];
                }
            }
        }
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < i; j++) {
                X[j * n + i] = X[i * n + j];
            }
        }
        return X;
    }

    /** U upper triangular with A = Uᵀ·U (torch.linalg.cholesky(A, upper=True)), in place; false if not PD. */
    public static boolean factorUpper(double[] A, int n) {
        if (!factorLower(A, n)) {
            return false;
        }
        // U = Lᵀ
        for (int i = 0; i < n; i++) {
            for (int j = i + 1; j < n; j++) {
                A[i * n + j] = A[j * n + i];
                A[j * n + i] = 0;
            }
        }
        return true;
    }
}
