package dev.shrink.kernels.cuda;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One decoder block's weights resident on the GPU, as {@link CudaForwardOps} multiplies them: the
 * two RMSNorm weights (float32) and, by spec linear name, each linear as float32, fp16 or packed
 * GPTQ codes (dequantized into a reused fp16 buffer when used), with an optional float32 bias.
 * Closing it frees them.
 */
public final class DeviceBlock implements AutoCloseable {
    /** How a linear's weight W [N, K] is held. */
    public enum Kind { F32, F16, PACKED }

    /**
     * One linear. F32 and F16: {@code weight} holds W [N, K]. PACKED: {@code weight} holds GPTQ's
     * qweight [K·bits/32, N], {@code qzeros} [G, N·bits/32], {@code scales} fp16 [G, N], {@code gIdx}
     * int32 [K] or null (group k / groupSize), zeros in the v1 or v2 convention (docs/FORMATS.md).
     */
    public record Linear(Kind kind, int N, int K, DeviceBuffer weight, DeviceBuffer qzeros, DeviceBuffer scales,
                         DeviceBuffer gIdx, int groupSize, int bits, boolean v1Zeros, DeviceBuffer bias)
            implements AutoCloseable {
        public static Linear dense(Kind kind, int N, int K, DeviceBuffer weight, DeviceBuffer bias) {
            if (kind == Kind.PACKED) {
                throw new IllegalArgumentException("dense linear of kind PACKED");
            }
            return new Linear(kind, N, K, weight, null, null, null, 0, 0, false, bias);
        }

        public static Linear packed(int N, int K, DeviceBuffer qweight, DeviceBuffer qzeros, DeviceBuffer scales,
                                    DeviceBuffer gIdx, int groupSize, int bits, boolean v1Zeros, DeviceBuffer bias) {
            return new Linear(Kind.PACKED, N, K, qweight, qzeros, scales, gIdx, groupSize, bits, v1Zeros, bias);
        }

        /** Device bytes held. */
        public long bytes() {
            long b = 0;
            for (DeviceBuffer d : new DeviceBuffer[] {weight, qzeros, scales, gIdx, bias}) {
                b += d == null ? 0 : d.bytes();
            }
            return b;
        }

        @Override
        public void close() {
            for (DeviceBuffer d : new DeviceBuffer[] {weight, qzeros, scales, gIdx, bias}) {
                if (d != null) {
                    d.close();
                }
            }
        }
    }

    private final int layer;
    private final DeviceBuffer inputNorm;
    private final DeviceBuffer postAttentionNorm;
    private final Map<String, Linear> linears = new LinkedHashMap<>();
    private DeviceBuffer qNorm, kNorm;
    private DeviceBuffer attentionOutputNorm, mlpOutputNorm;

    public DeviceBlock(int layer, DeviceBuffer inputNorm, DeviceBuffer postAttentionNorm) {
        this.layer = layer;
        this.inputNorm = inputNorm;
        this.postAttentionNorm = postAttentionNorm;
    }

    public int layer() {
        return layer;
    }

    public DeviceBuffer inputNorm() {
        return inputNorm;
    }

    public DeviceBuffer postAttentionNorm() {
        return postAttentionNorm;
    }

    /** The per-head q and k RMSNorm weights [D] (Qwen3), or null. */
    public DeviceBuffer qNorm() {
        return qNorm;
    }

    public DeviceBuffer kNorm() {
        return kNorm;
    }

    /** Takes over the per-head q and k norms (both or neither). */
    public void setHeadNorms(DeviceBuffer q, DeviceBuffer k) {
        qNorm = q;
        kNorm = k;
    }

    /** The RMSNorm weights [C] of the attention's and the MLP's outputs (Gemma), or null. */
    public DeviceBuffer attentionOutputNorm() {
        return attentionOutputNorm;
    }

    public DeviceBuffer mlpOutputNorm() {
        return mlpOutputNorm;
    }

    /** Takes over the norms of the attention's and the MLP's outputs (both or neither). */
    public void setOutputNorms(DeviceBuffer attention, DeviceBuffer mlp) {
        attentionOutputNorm = attention;
        mlpOutputNorm = mlp;
    }

    public void put(String name, Linear l) {
        Linear old = linears.put(name, l);
        if (old != null) {
            old.close();
        }
    }

    public Linear linear(String name) {
        Linear l = linears.get(name);
        if (l == null) {
            throw new IllegalArgumentException("block " + layer + " has no linear " + name);
        }
        return l;
    }

    public Iterable<Linear> linears() {
        return linears.values();
    }

    /** Device bytes held by this block. */
    public long bytes() {
        long b = inputNorm.bytes() + postAttentionNorm.bytes() + (qNorm == null ? 0 : qNorm.bytes() + kNorm.bytes())
                + (attentionOutputNorm == null ? 0 : attentionOutputNorm.bytes() + mlpOutputNorm.bytes());
        for (Linear l : linears.values()) {
            b += l.bytes();
        }
        return b;
    }

    @Override
    public void close() {
        linears.values().forEach(Linear::close);
        linears.clear();
        inputNorm.close();
        postAttentionNorm.close();
        if (qNorm != null) {
            qNorm.close();
            kNorm.close();
        }
        if (attentionOutputNorm != null) {
            attentionOutputNorm.close();
            mlpOutputNorm.close();
        }
    }
}
