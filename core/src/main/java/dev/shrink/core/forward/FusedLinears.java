package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.QuantizedLinear;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A {@link WeightSource} that shows a family's fused checkpoint tensors as the linears the forward
 * reads ({@link ArchitectureSpec#storedFused}): Phi-3's "self_attn.qkv_proj.weight" [(H + 2·Hkv)·D, C]
 * is seen as q_proj, k_proj and v_proj, its rows in that order, and "mlp.gate_up_proj.weight" [2·F, C]
 * as gate_proj and up_proj (biases likewise). Every other tensor passes through; a source whose family
 * stores nothing fused is returned as it is.
 *
 * <p>The writers' side is here too ({@link #fuseQuantized}, {@link #fuseDense}, {@link #fuseNames}): the
 * stages quantize or prune the parts apart, as the forward reads them, and the GPTQ, AWQ and pruned
 * writers join them back into the tensors the family's checkpoints hold, since its loaders (transformers,
 * vLLM) build one fused module and read only the fused names.
 */
public final class FusedLinears implements WeightSource {
    private final WeightSource src;
    private final ArchitectureSpec spec;
    private final ModelConfig cfg;

    private FusedLinears(WeightSource src, ArchitectureSpec spec, ModelConfig cfg) {
        this.src = src;
        this.spec = spec;
        this.cfg = cfg;
    }

    public static WeightSource split(WeightSource src, ArchitectureSpec spec, ModelConfig cfg) {
        return spec.storedFused().isEmpty() ? src : new FusedLinears(src, spec, cfg);
    }

    /** An unquantized folder's weights as the stages read them: as stored, fused tensors split. */
    public static WeightSource of(ModelDir dir) {
        return split(WeightSource.of(dir.weights()), dir.spec(), dir.config());
    }

    /** Where a part's rows lie in its fused tensor: the fused tensor's name, the first row, the row count. */
    private record Slice(String fused, int row0, int rows) {
    }

    private Slice slice(String name) {
        for (String suffix : new String[] {".weight", ".bias"}) {
            if (!name.endsWith(suffix) || !name.startsWith(spec.layerPrefix().substring(0, spec.layerPrefix().indexOf("%d")))) {
                continue;
            }
            String prefix = name.substring(0, name.length() - suffix.length());
            for (var f : spec.storedFused().entrySet()) {
                int row0 = 0;
                for (String part : f.getValue()) {
                    int rows = rows(part);
                    if (prefix.endsWith("." + part)) {
                        String layerPrefix = prefix.substring(0, prefix.length() - part.length());
                        return new Slice(layerPrefix + f.getKey() + suffix, row0, rows);
                    }
                    row0 += rows;
                }
            }
        }
        return null;
    }

    private int rows(String part) {
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (l.name().equals(part)) {
                return switch (l.role()) {
                    case Q -> cfg.qDim();
                    case K, V -> cfg.kvDim();
                    case O, DOWN -> cfg.hidden();
                    case GATE, UP -> cfg.intermediate();
                };
            }
        }
        throw new IllegalStateException(spec.family() + " has no linear " + part);
    }

    @Override
    public boolean has(String name) {
        Slice s = src.has(name) ? null : slice(name);
        return s != null ? src.has(s.fused) : src.has(name);
    }

    @Override
    public float[] floats(String name) {
        Slice s = src.has(name) ? null : slice(name);
        if (s == null) {
            return src.floats(name);
        }
        long[] shape = src.shape(s.fused);
        long cols = shape.length == 2 ? shape[1] : 1;
        checkRows(s, shape);
        float[] all = src.floats(s.fused);
        return Arrays.copyOfRange(all, (int) (s.row0 * cols), (int) ((s.row0 + s.rows) * cols));
    }

    @Override
    public long[] shape(String name) {
        Slice s = src.has(name) ? null : slice(name);
        if (s == null) {
            return src.shape(name);
        }
        long[] shape = src.shape(s.fused).clone();
        checkRows(s, shape);
        shape[0] = s.rows;
        return shape;
    }

    private void checkRows(Slice s, long[] shape) {
        long total = 0;
        for (var f : spec.storedFused().entrySet()) {
            if (s.fused.endsWith("." + f.getKey() + (s.fused.endsWith(".bias") ? ".bias" : ".weight"))) {
                total = f.getValue().stream().mapToLong(this::rows).sum();
            }
        }
        if (shape.length == 0 || shape[0] != total) {
            throw new dev.shrink.core.ShrinkException(src.origin(s.fused) + ": tensor '" + s.fused + "' has shape "
                    + Arrays.toString(shape) + " but config.json implies " + total + " rows ("
                    + String.join(" | ", List.of(spec.storedFused().keySet().toArray(new String[0]))) + " fused)");
        }
    }

    @Override
    public String origin(String name) {
        Slice s = src.has(name) ? null : slice(name);
        return src.origin(s != null ? s.fused : name);
    }

    // ---- The writers' side: the parts joined into the tensors the checkpoint stores. ----

    /** A part's place: the fused prefix ("model.layers.0.self_attn.qkv_proj"), its parts' prefixes in order, which one it is. */
    private record Part(String fused, List<String> parts, int index) {
    }

    /** The fused linear that the linear {@code prefix} ("model.layers.0.self_attn.k_proj") is a part of, or null. */
    private Part part(String prefix) {
        int at = spec.layerPrefix().indexOf("%d");
        String before = spec.layerPrefix().substring(0, at), after = spec.layerPrefix().substring(at + 2);
        if (!prefix.startsWith(before)) {
            return null;
        }
        int i = before.length();
        while (i < prefix.length() && Character.isDigit(prefix.charAt(i))) {
            i++;
        }
        if (i == before.length() || !prefix.startsWith(after, i)) {
            return null;
        }
        String layer = prefix.substring(0, i + after.length()), rest = prefix.substring(layer.length());
        for (var f : spec.storedFused().entrySet()) {
            int index = f.getValue().indexOf(rest);
            if (index >= 0) {
                return new Part(layer + f.getKey(), f.getValue().stream().map(p -> layer + p).toList(), index);
            }
        }
        return null;
    }

    /**
     * The quantized linears (by prefix) as a folder of this family stores them: the parts of each fused
     * linear joined into one under the fused prefix, their rows in the stored order: codes (and biases)
     * concatenated along N, scales and zero points [G, N] likewise, row group by row group. The parts must
     * agree on K, bits, group size and g_idx, as they do coming from one input (one Hessian, and under
     * act-order one permutation: GPTQModel and AutoAWQ quantize Phi-3's qkv_proj and gate_up_proj as one
     * linear). A writer then packs the joined linear once: its qweight, qzeros and scales are the parts'
     * own, concatenated along N, whenever each part's N is a multiple of the values a packed word holds
     * along N (the writers require that of each linear; vLLM's loader cuts a fused tensor at those
     * places). Other entries pass through; for a family that stores nothing fused the map is returned.
     *
     * @throws ShrinkException when only some parts of a fused linear are quantized: its checkpoint
     *                         tensor is one, packed or in float
     */
    public static Map<String, QuantizedLinear> fuseQuantized(ArchitectureSpec spec, ModelConfig cfg,
                                                             Map<String, QuantizedLinear> quantized) {
        if (spec.storedFused().isEmpty()) {
            return quantized;
        }
        FusedLinears names = new FusedLinears(null, spec, cfg);
        Map<String, QuantizedLinear> out = new LinkedHashMap<>();
        for (Map.Entry<String, QuantizedLinear> e : quantized.entrySet()) {
            Part p = names.part(e.getKey());
            if (p == null) {
                out.put(e.getKey(), e.getValue());
            } else if (!out.containsKey(p.fused)) {
                List<QuantizedLinear> parts = new ArrayList<>();
                for (String name : p.parts) {
                    QuantizedLinear q = quantized.get(name);
                    if (q == null) {
                        throw new ShrinkException(p.fused + ": " + spec.family() + " checkpoints store "
                                + String.join(", ", p.parts.stream().map(n -> n.substring(n.lastIndexOf('.') + 1)).toList())
                                + " as this one tensor, so they are quantized together or not at all, but "
                                + name.substring(name.lastIndexOf('.') + 1) + " is left in float while "
                                + e.getKey().substring(e.getKey().lastIndexOf('.') + 1) + " is quantized");
                    }
                    names.checkPartRows(name, q.N());
                    parts.add(q);
                }
                out.put(p.fused, join(p.fused, parts));
            }
        }
        return out;
    }

    private void checkPartRows(String name, int N) {
        int rows = rows(partName(name));
        if (rows != N) {
            throw new IllegalArgumentException("quantized linear '" + name + "' has " + N + " rows; config.json implies " + rows);
        }
    }

    /** The spec name of a full linear prefix ("model.layers.3.self_attn.q_proj" → "self_attn.q_proj"). */
    private String partName(String prefix) {
        for (ArchitectureSpec.Linear l : spec.linears()) {
            if (prefix.endsWith("." + l.name())) {
                return l.name();
            }
        }
        throw new IllegalStateException(prefix + " is no linear of " + spec.family());
    }

    private static QuantizedLinear join(String name, List<QuantizedLinear> parts) {
        QuantizedLinear first = parts.get(0);
        int K = first.K(), G = first.groupCount(), N = 0;
        boolean bias = first.bias() != null;
        for (QuantizedLinear q : parts) {
            if (q.K() != K || q.bits() != first.bits() || q.groupSize() != first.groupSize()
                    || !Arrays.equals(q.gIdx(), first.gIdx()) || (q.bias() != null) != bias) {
                throw new IllegalArgumentException("the parts of '" + name + "' differ in K, bits, group size, g_idx or bias: "
                        + parts + " (one input gives them one Hessian and one column order)");
            }
            N += q.N();
        }
        int[] codes = new int[Math.multiplyExact(N, K)];
        float[] scales = new float[G * N];
        int[] zeros = new int[G * N];
        float[] b = bias ? new float[N] : null;
        int n0 = 0;
        for (QuantizedLinear q : parts) {
            int n = q.N();
            System.arraycopy(q.codes(), 0, codes, n0 * K, n * K);
            for (int g = 0; g < G; g++) {
                System.arraycopy(q.scales(), g * n, scales, g * N + n0, n);
                System.arraycopy(q.zeros(), g * n, zeros, g * N + n0, n);
            }
            if (bias) {
                System.arraycopy(q.bias(), 0, b, n0, n);
            }
            n0 += n;
        }
        return new QuantizedLinear(name, N, K, first.bits(), first.groupSize(), codes, scales, zeros, first.gIdx(), b);
    }

    /**
     * Float tensors by name ("…q_proj.weight" → [N, K] row-major, "….bias") as a folder of this family
     * stores them: the parts of a fused linear joined into the fused tensor (rows concatenated in the stored
     * order), a part absent from the map taken from {@code split} (the source read through
     * {@link #split}), so that pruning or scaling some parts rewrites the fused tensor with the others
     * unchanged. Other entries pass through; for a family that stores nothing fused the map is returned.
     */
    public static Map<String, float[]> fuseDense(ArchitectureSpec spec, ModelConfig cfg, WeightSource split,
                                                 Map<String, float[]> tensors) {
        if (spec.storedFused().isEmpty()) {
            return tensors;
        }
        FusedLinears names = new FusedLinears(null, spec, cfg);
        Map<String, float[]> out = new LinkedHashMap<>();
        for (Map.Entry<String, float[]> e : tensors.entrySet()) {
            String suffix = e.getKey().endsWith(".weight") ? ".weight" : e.getKey().endsWith(".bias") ? ".bias" : null;
            Part p = suffix == null ? null : names.part(e.getKey().substring(0, e.getKey().length() - suffix.length()));
            if (p == null) {
                out.put(e.getKey(), e.getValue());
                continue;
            }
            String fused = p.fused + suffix;
            if (out.containsKey(fused)) {
                continue;
            }
            List<float[]> parts = new ArrayList<>();
            int total = 0;
            for (String part : p.parts) {
                float[] v = tensors.containsKey(part + suffix) ? tensors.get(part + suffix) : split.floats(part + suffix);
                long expected = 1;
                for (long d : split.shape(part + suffix)) {
                    expected *= d;
                }
                if (v.length != expected) {
                    throw new IllegalArgumentException("tensor '" + part + suffix + "' has " + v.length
                            + " values, the source " + expected);
                }
                parts.add(v);
                total += v.length;
            }
            float[] joined = new float[total];
            int at = 0;
            for (float[] v : parts) {
                System.arraycopy(v, 0, joined, at, v.length);
                at += v.length;
            }
            out.put(fused, joined);
        }
        return out;
    }

    /** Tensor names ("…k_proj.weight") as stored: a part's name becomes its fused tensor's, once. */
    public static Set<String> fuseNames(ArchitectureSpec spec, ModelConfig cfg, Set<String> tensors) {
        if (spec.storedFused().isEmpty()) {
            return tensors;
        }
        FusedLinears names = new FusedLinears(null, spec, cfg);
        Set<String> out = new LinkedHashSet<>();
        for (String t : tensors) {
            String suffix = t.endsWith(".weight") ? ".weight" : t.endsWith(".bias") ? ".bias" : null;
            Part p = suffix == null ? null : names.part(t.substring(0, t.length() - suffix.length()));
            out.add(p == null ? t : p.fused + suffix);
        }
        return out;
    }
}
