package dev.shrink.gptq;

import java.util.Objects;

/**
 * How a GPTQ folder was quantized: what its {@code quantization_config} says (FORMATS.md, "GPTQ").
 *
 * @param bits           code width: 2, 3, 4 or 8
 * @param groupSize      input columns per group, or −1 for one group per output channel
 * @param sym            symmetric quantization (zero point 2^(bits−1) everywhere)
 * @param descAct        act-order: columns quantized in order of decreasing diag(H)
 * @param staticGroups   groups fixed on the original column order even with act-order
 * @param trueSequential linears of a block quantized group by group (ArchitectureSpec.sequentialGroups)
 * @param dampPercent    Hessian dampening as a fraction of the mean diagonal (0.01 = 1 %)
 * @param quantizer      "tool:version", written to {@code meta.quantizer}, e.g. "shrink:0.1.0"
 */
public record GptqFormat(int bits, int groupSize, boolean sym, boolean descAct, boolean staticGroups,
                         boolean trueSequential, double dampPercent, String quantizer) {

    public GptqFormat {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException("GPTQ bits " + bits + " is not supported (2, 3, 4, 8)");
        }
        if (groupSize != -1 && groupSize <= 0) {
            throw new IllegalArgumentException("GPTQ group size " + groupSize + " must be positive or -1");
        }
        if (!Double.isFinite(dampPercent) || dampPercent < 0) {
            throw new IllegalArgumentException("damp_percent " + dampPercent + " must be a non-negative number");
        }
        Objects.requireNonNull(quantizer, "quantizer");
        if (quantizer.isBlank()) {
            throw new IllegalArgumentException("quantizer must name the tool, e.g. \"shrink:0.1.0\"");
        }
    }
}
