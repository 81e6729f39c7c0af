package dev.shrink.kernels.cpu;

/**
 * Argument checks shared by the CPU backends, so both reject the same calls with the same
 * messages instead of failing somewhere inside a loop (or, worse, reading a neighbour's data
 * through a too-small leading dimension). All failures are {@link IllegalArgumentException}s:
 * they are programming errors of the caller, not user errors. The CUDA backend uses them too.
 */
public final class OpsChecks {
    private OpsChecks() {
    }

    /** Checks a gemm call: dims, leading dims and that every addressed element lies in its array. */
    public static void gemm(boolean transA, boolean transB, int M, int N, int K,
                     float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                     float[] C, int cOff, int ldc) {
        if (M < 0 || N < 0 || K < 0) {
            throw new IllegalArgumentException("gemm: negative size M=" + M + " N=" + N + " K=" + K);
        }
        // Stored shapes: A is [M, K] (or [K, M] when transA), B is [K, N] (or [N, K] when transB).
        int aRows = transA ? K : M, aCols = transA ? M : K;
        int bRows = transB ? N : K, bCols = transB ? K : N;
        matrix("A", A, aOff, lda, aRows, aCols);
        matrix("B", B, bOff, ldb, bRows, bCols);
        matrix("C", C, cOff, ldc, M, N);
    }

    /** A row-major [rows, cols] matrix stored at off with leading dimension ld. */
    public static void matrix(String what, float[] a, int off, int ld, int rows, int cols) {
        if (a == null) {
            throw new IllegalArgumentException("gemm: " + what + " is null");
        }
        if (off < 0) {
            throw new IllegalArgumentException("gemm: " + what + " offset " + off + " < 0");
        }
        if (ld < Math.max(1, cols)) {
            throw new IllegalArgumentException("gemm: leading dimension of " + what + " is " + ld
                    + ", less than its " + cols + " columns");
        }
        if (rows == 0 || cols == 0) {
            return;
        }
        long last = off + (long) (rows - 1) * ld + cols - 1;
        if (last >= a.length) {
            throw new IllegalArgumentException("gemm: " + what + " [" + rows + ", " + cols + "] at offset "
                    + off + " with ld " + ld + " needs " + (last + 1) + " floats, array has " + a.length);
        }
    }

    /** Checks that array a holds at least n elements. */
    public static void length(String op, String what, float[] a, long n) {
        if (a == null) {
            throw new IllegalArgumentException(op + ": " + what + " is null");
        }
        if (a.length < n) {
            throw new IllegalArgumentException(op + ": " + what + " has " + a.length + " floats, needs " + n);
        }
    }

    public static void nonNegative(String op, String what, int value) {
        if (value < 0) {
            throw new IllegalArgumentException(op + ": " + what + " = " + value + " < 0");
        }
    }

    public static void rmsNorm(float[] x, float[] weight, int M, int C, float[] y) {
        nonNegative("rmsNorm", "M", M);
        nonNegative("rmsNorm", "C", C);
        length("rmsNorm", "x", x, (long) M * C);
        length("rmsNorm", "weight", weight, C);
        length("rmsNorm", "y", y, (long) M * C);
    }

    /** rope: x [T, heads, D], D even, cos/sin [maxPos, D/2] with every position in range. */
    public static void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
        nonNegative("rope", "T", T);
        nonNegative("rope", "heads", heads);
        nonNegative("rope", "D", D);
        if (D % 2 != 0) {
            throw new IllegalArgumentException("rope: head dim D = " + D + " is odd");
        }
        length("rope", "x", x, (long) T * heads * D);
        if (positions == null || positions.length < T) {
            throw new IllegalArgumentException("rope: positions has "
                    + (positions == null ? "no" : positions.length) + " entries, needs " + T);
        }
        int half = D / 2;
        if (cos == null || sin == null || cos.length != sin.length) {
            throw new IllegalArgumentException("rope: cos and sin tables must both be present and of equal size");
        }
        long maxPos = half == 0 ? Long.MAX_VALUE : cos.length / half;
        for (int t = 0; t < T; t++) {
            if (positions[t] < 0 || positions[t] >= maxPos) {
                throw new IllegalArgumentException("rope: position " + positions[t] + " of token " + t
                        + " is outside the table of " + maxPos + " positions");
            }
        }
    }

    /** attention: q, out [Tq, H, D]; k, v [Tk, Hkv, D]; H a multiple of Hkv; Tq ≤ Tk. */
    public static void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
        nonNegative("attention", "Tq", Tq);
        nonNegative("attention", "D", D);
        if (H <= 0 || Hkv <= 0 || H % Hkv != 0) {
            throw new IllegalArgumentException("attention: H = " + H + " is not a positive multiple of Hkv = " + Hkv);
        }
        if (Tq > Tk) {
            throw new IllegalArgumentException("attention: Tq = " + Tq + " queries but only Tk = " + Tk + " keys");
        }
        length("attention", "q", q, (long) Tq * H * D);
        length("attention", "k", k, (long) Tk * Hkv * D);
        length("attention", "v", v, (long) Tk * Hkv * D);
        length("attention", "out", out, (long) Tq * H * D);
    }

    public static void swiglu(float[] gate, float[] up, int n, float[] out) {
        nonNegative("swiglu", "n", n);
        length("swiglu", "gate", gate, n);
        length("swiglu", "up", up, n);
        length("swiglu", "out", out, n);
    }

    /** geglu: gate, up, out of n. */
    public static void geglu(float[] gate, float[] up, int n, float[] out) {
        nonNegative("geglu", "n", n);
        length("geglu", "gate", gate, n);
        length("geglu", "up", up, n);
        length("geglu", "out", out, n);
    }

    /** crossEntropy: logits [M, V], every target in [0, V). */
    public static void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
        nonNegative("crossEntropy", "M", M);
        if (V <= 0) {
            throw new IllegalArgumentException("crossEntropy: vocabulary size V = " + V + " must be positive");
        }
        length("crossEntropy", "logits", logits, (long) M * V);
        if (targets == null || targets.length < M) {
            throw new IllegalArgumentException("crossEntropy: targets has fewer than M = " + M + " entries");
        }
        if (nll == null || nll.length < M) {
            throw new IllegalArgumentException("crossEntropy: nll has fewer than M = " + M + " entries");
        }
        for (int m = 0; m < M; m++) {
            if (targets[m] < 0 || targets[m] >= V) {
                throw new IllegalArgumentException("crossEntropy: target " + targets[m] + " of row " + m
                        + " is outside the vocabulary [0, " + V + ")");
            }
        }
    }
}
