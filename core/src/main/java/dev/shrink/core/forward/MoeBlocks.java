package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What the compression stages (GPTQ, AWQ, pruning) see of a block that may be a mixture of experts
 * (docs/FORWARD.md, "Mixtures of experts"): the linears they compress (a sparse block's every expert's
 * gate, up and down and the shared expert's, never the router nor the shared expert's gate), GPTQ's
 * true-sequential order over them, and the rule for an expert that the router sends too few calibration
 * tokens to: its statistics come from every token of the block's MLP input instead, as if every token
 * were routed to it ({@link #fallbackInputs}). Dense blocks are the spec's linears as they are.
 */
public final class MoeBlocks {
    private MoeBlocks() {
    }

    /** The default {@link Threshold}: 0.5% of the calibration tokens, GPTQModel's default for its MoE fallback. */
    public static final String DEFAULT_MIN_TOKENS = "0.5%";

    /**
     * The fewest calibration tokens an expert must receive for its own statistics: a count ("64") or a
     * share of the calibration tokens ("0.5%"); an expert with fewer uses the fallback.
     */
    public record Threshold(double value, boolean percent) {
        public Threshold {
            if (!(value >= 0) || Double.isInfinite(value) || (percent && value > 100)) {
                throw new ShrinkException("the expert token threshold must be a count ≥ 0 or a percentage 0..100%, got "
                        + value + (percent ? "%" : ""));
            }
        }

        /** Parses "64" or "0.5%"; a ShrinkException naming {@code option} when it is neither. */
        public static Threshold parse(String text, String option) {
            String t = text.strip();
            boolean pct = t.endsWith("%");
            try {
                return new Threshold(Double.parseDouble(pct ? t.substring(0, t.length() - 1) : t), pct);
            } catch (NumberFormatException e) {
                throw new ShrinkException(option + ": '" + text + "' is not a token count or a percentage (e.g. 64 or 0.5%)");
            }
        }

        /** The least count of tokens for an expert's own statistics, of {@code calibrationTokens} in all (at least 1). */
        public long tokens(long calibrationTokens) {
            double t = percent ? value / 100 * calibrationTokens : value;
            return Math.max(1, (long) Math.ceil(t));
        }

        @Override
        public String toString() {
            String v = value == Math.rint(value) ? Long.toString((long) value) : Double.toString(value);
            return percent ? v + "%" : v;
        }
    }

    /**
     * Block {@code layer}'s linears that the stages compress, by name under the layer prefix, in forward
     * order: the spec's linears for a dense block; for a sparse block its attention's, then each expert's
     * gate, up and down, then the shared expert's (the router and the shared expert's gate are never
     * compressed: {@link #neverCompressed}).
     */
    public static List<String> linears(ModelConfig cfg, ArchitectureSpec spec, int layer) {
        List<String> out = new ArrayList<>();
        boolean sparse = cfg.sparseLayer(layer);
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (!sparse || !mlpRole(l.role())) {
                out.add(l.name());
            }
        }
        if (sparse) {
            for (String name : BlockWeights.moeLinears(cfg, spec).keySet()) {
                if (!neverCompressed(spec, name)) {
                    out.add(name);
                }
            }
        }
        return out;
    }

    /**
     * GPTQ's true-sequential groups of block {@code layer}: the spec's for a dense block; for a sparse
     * block the attention's groups, then every expert's gate and up with the shared expert's (they read
     * the same normed input), then every down.
     */
    public static List<List<String>> sequentialGroups(ModelConfig cfg, ArchitectureSpec spec, int layer) {
        if (!cfg.sparseLayer(layer)) {
            return spec.sequentialGroups();
        }
        List<List<String>> groups = new ArrayList<>();
        for (List<String> g : spec.sequentialGroups()) {
            if (g.stream().noneMatch(n -> mlpRole(role(spec, n)))) {
                groups.add(g);
            }
        }
        List<String> in = new ArrayList<>(), down = new ArrayList<>();
        for (String name : linears(cfg, spec, layer)) {
            Role r = role(spec, name);
            if (r == Role.GATE || r == Role.UP) {
                in.add(name);
            } else if (r == Role.DOWN) {
                down.add(name);
            }
        }
        groups.add(in);
        groups.add(down);
        return groups;
    }

    /** The router and the shared expert's sigmoid gate: read by the routing, kept as stored. */
    public static boolean neverCompressed(ArchitectureSpec spec, String name) {
        ArchitectureSpec.Moe m = spec.moe();
        return m != null && (name.equals(m.router()) || name.equals(m.sharedExpertGate()));
    }

    /**
     * The role of a linear by its name under the layer prefix: the spec's for the block's linears, GATE,
     * UP or DOWN for an expert's or the shared expert's parts; null for the router, the shared expert's
     * gate and unknown names.
     */
    public static Role role(ArchitectureSpec spec, String name) {
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (l.name().equals(name)) {
                return l.role();
            }
        }
        ArchitectureSpec.Moe m = spec.moe();
        if (m == null || neverCompressed(spec, name)) {
            return null;
        }
        boolean expertOrShared = expert(spec, name) >= 0 || (m.sharedExpert() != null && name.startsWith(m.sharedExpert()));
        if (!expertOrShared) {
            return null;
        }
        if (name.endsWith("." + m.gate())) {
            return Role.GATE;
        }
        if (name.endsWith("." + m.up())) {
            return Role.UP;
        }
        return name.endsWith("." + m.down()) ? Role.DOWN : null;
    }

    /** The routed expert whose linear {@code name} is (e.g. 3 for "mlp.experts.3.up_proj"), or −1. */
    public static int expert(ArchitectureSpec spec, String name) {
        ArchitectureSpec.Moe m = spec.moe();
        if (m == null) {
            return -1;
        }
        int at = m.expertPrefix().indexOf("%d");
        String before = m.expertPrefix().substring(0, at), after = m.expertPrefix().substring(at + 2);
        if (!name.startsWith(before)) {
            return -1;
        }
        int i = before.length(), j = i;
        while (j < name.length() && Character.isDigit(name.charAt(j))) {
            j++;
        }
        if (j == i || !name.startsWith(after, j)) {
            return -1;
        }
        return Integer.parseInt(name.substring(i, j));
    }

    /**
     * Counts each expert's routed tokens in a forward of block {@code layer}: the rows its gate linear
     * sees (the forward runs an expert on its routed rows only).
     */
    public static final class Counter implements Taps {
        private final int layer;
        private final ArchitectureSpec.Moe names;
        private final long[] counts;
        private final Taps next;

        /** Counts for the E experts of {@code cfg} and passes every call on to {@code next}. */
        public Counter(ModelConfig cfg, ArchitectureSpec spec, int layer, Taps next) {
            this.layer = layer;
            this.names = spec.moe();
            this.counts = new long[cfg.moe() == null ? 0 : cfg.moe().experts()];
            this.next = next;
        }

        @Override
        public void blockInput(int layer, float[] x, int M, int C) {
            next.blockInput(layer, x, M, C);
        }

        @Override
        public void linearInput(int layer, String linear, float[] x, int M, int K) {
            if (layer == this.layer && names != null && linear.endsWith("." + names.gate())) {
                for (int e = 0; e < counts.length; e++) {
                    if (linear.equals(names.expert(e, names.gate()))) {
                        counts[e] += M;
                    }
                }
            }
            next.linearInput(layer, linear, x, M, K);
        }

        @Override
        public void blockOutput(int layer, float[] x, int M, int C) {
            next.blockOutput(layer, x, M, C);
        }

        /** Tokens routed to each expert so far. */
        public long[] counts() {
            return counts.clone();
        }
    }

    /**
     * The experts among {@code linears}' that received fewer than {@code minTokens} tokens ({@code counts}
     * from a {@link Counter}), in increasing order.
     */
    public static List<Integer> underRouted(ArchitectureSpec spec, Iterable<String> linears, long[] counts, long minTokens) {
        java.util.TreeSet<Integer> out = new java.util.TreeSet<>();
        for (String name : linears) {
            int e = expert(spec, name);
            if (e >= 0 && counts[e] < minTokens) {
                out.add(e);
            }
        }
        return new ArrayList<>(out);
    }

    /**
     * The fallback for under-routed experts: delivers to {@code sink}, for every expert of {@code experts}
     * whose linears are among {@code wanted}, the inputs its linears would see if every token of the
     * batch were routed to it: the MLP's normed input h (every row) for gate and up, and
     * act(h·W_gateᵀ) ⊙ h·W_upᵀ of its current weights for down. One pass of block {@code w} over the
     * sequences xs (in batches of {@code batch}), up to the router's input; xs is not changed.
     *
     * @param beforeBatch run before each batch (a stage's taps may start a new batch there); may be null
     */
    public static void fallbackInputs(Decoder decoder, BlockWeights w, float[][] xs, int batch, int T,
                                      List<Integer> experts, Set<String> wanted, Taps sink, Runnable beforeBatch) {
        ModelConfig cfg = decoder.config();
        ArchitectureSpec spec = decoder.spec();
        ArchitectureSpec.Moe m = spec.moe();
        Ops ops = decoder.ops();
        int layer = w.layer(), C = cfg.hidden(), F = cfg.moe().expertIntermediate();
        Taps taps = new Taps() {
            @Override
            public void linearInput(int l, String linear, float[] h, int M, int K) {
                if (l != layer || !linear.equals(m.router())) {
                    return;
                }
                for (int e : experts) {
                    String g = m.expert(e, m.gate()), u = m.expert(e, m.up()), d = m.expert(e, m.down());
                    if (wanted.contains(g)) {
                        sink.linearInput(layer, g, h, M, C);
                    }
                    if (wanted.contains(u)) {
                        sink.linearInput(layer, u, h, M, C);
                    }
                    if (wanted.contains(d)) {
                        float[] a = new float[M * F], b = new float[M * F];
                        ops.linear(h, M, C, w.weight(g), F, a);
                        ops.linear(h, M, C, w.weight(u), F, b);
                        if (cfg.activation() == ModelConfig.Activation.GELU_TANH) {
                            ops.geglu(a, b, M * F, a);
                        } else {
                            ops.swiglu(a, b, M * F, a);
                        }
                        sink.linearInput(layer, d, a, M, F);
                    }
                }
            }
        };
        int n = xs.length;
        for (int s0 = 0; s0 < n; s0 += batch) {
            int B = Math.min(batch, n - s0);
            if (beforeBatch != null) {
                beforeBatch.run();
            }
            decoder.tapInputs(w, Calibration.gather(xs, s0, B, T * C), B, T, Set.of(m.router()), taps);
        }
    }

    /**
     * One sparse block's experts in a stage's pass: counts their routed tokens ({@link #counting}), and
     * after the pass gathers the fallback statistics of those under the threshold ({@link #fallback}) into
     * taps of the stage's own kind, which then stand in for the routed ones ({@link #fellBack}).
     *
     * @param <T> the stage's statistics taps (GPTQ's Hessians, Wanda's norms)
     */
    public static final class Experts<T extends Taps> {
        private final ModelConfig cfg;
        private final ArchitectureSpec spec;
        private final int layer;
        private final long minTokens;
        private final java.util.TreeSet<Integer> fellBack = new java.util.TreeSet<>();
        private Counter counter;
        private long[] counts;
        private T fallbackTaps;

        public Experts(ModelConfig cfg, ArchitectureSpec spec, int layer, long minTokens) {
            this.cfg = cfg;
            this.spec = spec;
            this.layer = layer;
            this.minTokens = minTokens;
            this.counts = new long[cfg.moe().experts()];
        }

        /** Taps for one pass: counts each expert's tokens (anew) and passes every call on to {@code next}. */
        public Taps counting(Taps next) {
            counter = new Counter(cfg, spec, layer, next);
            return counter;
        }

        /**
         * After a pass through {@link #counting} over the linears {@code todo}: the experts among theirs that got
         * fewer tokens than the threshold have their linears' inputs over every token delivered to new taps
         * ({@code make}; {@code beforeBatch} runs on them before each batch), kept until the next call.
         */
        public void fallback(Decoder decoder, BlockWeights w, float[][] xs, int batch, int T, Set<String> todo,
                             java.util.function.Supplier<T> make, java.util.function.Consumer<T> beforeBatch) {
            counts = counter.counts();
            List<Integer> under = underRouted(spec, todo, counts, minTokens);
            fallbackTaps = null;
            if (under.isEmpty()) {
                return;
            }
            fellBack.addAll(under);
            T taps = make.get();
            fallbackInputs(decoder, w, xs, batch, T, under, todo, taps, () -> beforeBatch.accept(taps));
            fallbackTaps = taps;
        }

        /** Whether linear {@code name}'s statistics are the fallback's (its expert had too few tokens). */
        public boolean fellBack(String name) {
            int e = expert(spec, name);
            return e >= 0 && fallbackTaps != null && counts[e] < minTokens;
        }

        /** The fallback statistics of the last {@link #fallback}, or null when no expert fell back. */
        public T fallbackTaps() {
            return fallbackTaps;
        }

        /** The block's entry of the report: each expert's tokens (last pass), the threshold, the experts that fell back. */
        public Report report() {
            return new Report(layer, counts.clone(), minTokens, List.copyOf(fellBack));
        }

        /** The progress line's note: "block L: F of E experts under N tokens (fallback)". */
        public String note() {
            return "block " + layer + ": " + fellBack.size() + " of " + counts.length + " experts under " + minTokens
                    + " tokens (fallback)";
        }
    }

    /** The expert token counts of a block as a report's entry: each expert's tokens and those that fell back. */
    /**
     * A stage report's "experts" entry (docs/JSON.md): the threshold as given, the stage's rule for an
     * expert under it ({@code fallback}, in words), how many experts took it, and per sparse block each
     * expert's routed calibration tokens and the ones that fell back.
     */
    public static Map<String, Object> reportEntry(Threshold minTokens, String fallback, List<Report> blocks) {
        Map<String, Object> e = new java.util.LinkedHashMap<>();
        e.put("min_tokens", minTokens.toString());
        e.put("fallback", fallback);
        e.put("fallback_experts", blocks.stream().mapToInt(b -> b.fallback().size()).sum());
        e.put("blocks", blocks);
        return e;
    }

    public record Report(int layer, long[] tokens, long threshold, List<Integer> fallback) {
    }

    private static boolean mlpRole(Role r) {
        return r == Role.GATE || r == Role.UP || r == Role.DOWN;
    }
}
