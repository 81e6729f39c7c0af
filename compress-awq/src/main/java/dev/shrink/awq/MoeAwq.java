package dev.shrink.awq;

import dev.shrink.core.forward.MoeBlocks;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.AwqMapping;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

/**
 * AWQ's mappings of a mixture of experts' sparse block, as AutoAWQ's Mixtral, Qwen2-MoE and Qwen3-MoE
 * models list them: the attention's as for the dense block; the MLP's input norm scales every expert's
 * gate and up (and the shared expert's) as one group inspected on the whole sparse MLP; each expert's
 * up scales its down, inspected on that expert's routed rows (the shared expert's likewise). Unlike
 * AutoAWQ, the router and the shared expert's gate, which read the same normed input, get their
 * columns multiplied by the scales ({@link AwqApply#scale}) so that the routing stays the same.
 */
final class MoeAwq {
    private MoeAwq() {
    }

    /** The AWQ mappings of block {@code layer}: the spec's for a dense block, the sparse MLP's as above. */
    static List<AwqMapping> mappings(ModelConfig cfg, ArchitectureSpec spec, int layer) {
        if (!cfg.sparseLayer(layer)) {
            return spec.awqMappings();
        }
        List<AwqMapping> out = new ArrayList<>();
        for (AwqMapping m : spec.awqMappings()) {
            Role r = MoeBlocks.role(spec, m.consumers().get(0));
            if (r != Role.GATE && r != Role.UP && r != Role.DOWN) {
                out.add(m);
            }
        }
        ArchitectureSpec.Moe moe = spec.moe();
        List<String> in = new ArrayList<>();
        for (int e = 0; e < cfg.moe().experts(); e++) {
            in.add(moe.expert(e, moe.gate()));
            in.add(moe.expert(e, moe.up()));
        }
        if (cfg.moe().sharedExpert()) {
            in.add(moe.shared(moe.gate()));
            in.add(moe.shared(moe.up()));
        }
        String norm = spec.postAttentionNorm().substring(0, spec.postAttentionNorm().length() - ".weight".length());
        out.add(new AwqMapping(norm, in, "mlp", false));
        for (int e = 0; e < cfg.moe().experts(); e++) {
            String down = moe.expert(e, moe.down());
            out.add(new AwqMapping(moe.expert(e, moe.up()), List.of(down), down, false));
        }
        if (cfg.moe().sharedExpert()) {
            String down = moe.shared(moe.down());
            out.add(new AwqMapping(moe.shared(moe.up()), List.of(down), down, false));
        }
        return out;
    }

    /**
     * After the statistics pass of sparse block {@code layer}: the up → down mappings of experts routed
     * fewer than {@code minTokens} tokens leave {@code active} for {@code skipped} (too few inputs to
     * judge scales by; those experts also get no clip search), their experts go to {@code underRouted}.
     *
     * @return the block's entry of the report
     */
    static MoeBlocks.Report dropUnderRouted(ModelConfig cfg, ArchitectureSpec spec, int layer,
                                            List<AwqStage.Resolved> active, AwqStage.StatsTaps stats, long minTokens,
                                            List<AwqStage.MappingReport> skipped, Set<Integer> underRouted) {
        ArchitectureSpec.Moe moe = spec.moe();
        int E = cfg.moe().experts();
        long[] tokens = new long[E];
        for (int e = 0; e < E; e++) {
            tokens[e] = stats.rows(moe.expert(e, moe.gate()));
            if (tokens[e] < minTokens) {
                underRouted.add(e);
            }
        }
        for (Iterator<AwqStage.Resolved> it = active.iterator(); it.hasNext(); ) {
            AwqStage.Resolved r = it.next();
            int e = MoeBlocks.expert(spec, r.mapping().previous());
            if (e >= 0 && underRouted.contains(e)) {
                it.remove();
                skipped.add(new AwqStage.MappingReport(layer, spec.layer(layer, r.mapping().previous()),
                        AwqStage.full(spec, layer, r.consumers()), r.mapping().inspect(), "skipped",
                        "expert " + e + " was routed " + tokens[e] + " calibration tokens, fewer than " + minTokens,
                        null, null, null, null));
            }
        }
        return new MoeBlocks.Report(layer, tokens, minTokens, List.copyOf(underRouted));
    }

    /**
     * The router and shared expert's gate of sparse block {@code layer} join the modified tensors when a plan
     * scaled the MLP's input norm ({@link AwqApply#scale} multiplied their columns).
     */
    static void routersScaled(ModelConfig cfg, ArchitectureSpec spec, int layer, List<ScalePlan> plans,
                              Set<String> modifiedNames) {
        if (!cfg.sparseLayer(layer)) {
            return;
        }
        for (ScalePlan p : plans) {
            if ((p.previous() + ".weight").equals(spec.postAttentionNorm())) {
                modifiedNames.add(spec.moe().router());
                if (cfg.moe().sharedExpert()) {
                    modifiedNames.add(spec.moe().sharedExpertGate());
                }
            }
        }
    }
}
