package dev.shrink.core.model;

import java.util.List;

/**
 * The mixture-of-experts part of a config.json (Mixtral, Qwen2-MoE, Qwen3-MoE), as transformers reads
 * it: which blocks have a sparse MLP, how many experts there are, how many each token is routed to,
 * whether the chosen weights are renormalised, the experts' widths. The tensor names are the
 * spec's ({@link ArchitectureSpec.Moe}); the forward is docs/FORWARD.md's.
 *
 * @param experts         E: num_local_experts (Mixtral) or num_experts (Qwen); 0 makes every block dense (Qwen)
 * @param topK            k: num_experts_per_tok, 1 ≤ k ≤ E
 * @param normTopK        whether the k chosen probabilities are divided by their sum (Mixtral always;
 *                        Qwen with norm_topk_prob)
 * @param expertIntermediate each expert's MLP width: intermediate_size (Mixtral), moe_intermediate_size (Qwen)
 * @param sharedIntermediate the shared expert's width (Qwen2-MoE's shared_expert_intermediate_size), or 0: none
 * @param sparseStep      decoder_sparse_step: block l is sparse when (l + 1) % step == 0
 * @param mlpOnlyLayers   mlp_only_layers: blocks that keep a dense MLP of intermediate_size
 */
public record MoeConfig(int experts, int topK, boolean normTopK, int expertIntermediate, int sharedIntermediate,
                        int sparseStep, List<Integer> mlpOnlyLayers) {

    /**
     * Whether block {@code layer}'s MLP is the sparse mixture (else the dense MLP of intermediate_size),
     * as transformers' decoder layers decide: not in mlp_only_layers, experts &gt; 0 and
     * (layer + 1) % decoder_sparse_step == 0.
     */
    public boolean sparse(int layer) {
        return !mlpOnlyLayers.contains(layer) && experts > 0 && (layer + 1) % sparseStep == 0;
    }

    /** Whether a shared expert (with its sigmoid gate) is added to the routed experts' sum (Qwen2-MoE). */
    public boolean sharedExpert() {
        return sharedIntermediate > 0;
    }
}
