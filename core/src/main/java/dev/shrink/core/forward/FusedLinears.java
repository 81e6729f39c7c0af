package dev.shrink.core.forward;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import java.util.Arrays;
import java.util.List;

/**
 * A {@link WeightSource} that shows a family's fused checkpoint tensors as the linears the forward
 * reads ({@link ArchitectureSpec#storedFused}): Phi-3's "self_attn.qkv_proj.weight" [(H + 2·Hkv)·D, C]
 * is seen as q_proj, k_proj and v_proj, its rows in that order, and "mlp.gate_up_proj.weight" [2·F, C]
 * as gate_proj and up_proj (biases likewise). Every other tensor passes through; a source whose family
 * stores nothing fused is returned as it is.
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
}
