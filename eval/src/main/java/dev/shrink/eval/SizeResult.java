package dev.shrink.eval;

/**
 * What a model folder holds on disk, against the baseline's parameters ({@link ModelSize}).
 *
 * @param weightBytes         bytes of the folder's {@code *.safetensors} files (headers included)
 * @param folderBytes         bytes of every file of the folder (tokenizer, config, report, ...)
 * @param parameters          elements of every tensor of the baseline (embeddings, norms, head, linears)
 * @param bitsPerWeight       8 · weightBytes / parameters: what each of the baseline's weights costs
 * @param linearBytes         bytes of the tensors of the decoder linears (qweight, qzeros, scales,
 *                            g_idx, bias; or weight, bias)
 * @param linearParameters    elements of the decoder linears' weights and biases in the baseline
 * @param linearBitsPerWeight 8 · linearBytes / linearParameters (4-bit g128 GPTQ ≈ 4.2: scales,
 *                            zeros and g_idx included)
 */
public record SizeResult(long weightBytes, long folderBytes, long parameters, double bitsPerWeight, long linearBytes,
                         long linearParameters, double linearBitsPerWeight) {
}
