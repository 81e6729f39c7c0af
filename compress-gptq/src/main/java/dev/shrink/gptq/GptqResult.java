package dev.shrink.gptq;

/**
 * What GPTQ (or SparseGPT) made of one linear. W: [N, K]. After prune-only SparseGPT
 * codes, scales, zeros and gIdx are null.
 *
 * @param Q        the quantized weight, dequantized, in the original column order: [N, K]
 * @param codes    integer codes q[n][k] in the original column order: [N, K]
 * @param scales   [G, N]
 * @param zeros    integer zero points z (not z − 1): [G, N]
 * @param gIdx     group of each original input column: [K]
 * @param loss     Σ (w − q)² / Hinv[i,i]² / 2, the reference's reported error
 * @param damp     the damp fraction finally used (raised when Cholesky failed)
 * @param dampRaised whether it had to be raised
 * @param deadColumns input columns with diag(H) = 0 (never activated), zeroed
 * @param masked   weights that are exact zeros in Q because they were zero on input, pruned, or dead
 * @param choleskySeconds time spent on H⁻¹ and its factor
 * @param columnSeconds   time spent in the column loop and lazy updates
 */
public record GptqResult(float[] Q, int[] codes, float[] scales, int[] zeros, int[] gIdx,
                         double loss, double damp, boolean dampRaised, int deadColumns, int masked,
                         double choleskySeconds, double columnSeconds) {
}
