package dev.shrink.distill;

import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;

/**
 * The LLaMA-family decoder for training: the forward of {@link dev.shrink.core.forward.Decoder}
 * (pre-norm blocks x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)), rotate-half RoPE, grouped KV
 * heads, Qwen3's per-head RMSNorms of q and k before RoPE where the block has them, SwiGLU, final
 * RMSNorm, head), keeping what each op's backward needs, and the backward
 * through every op in reverse order. Written once against {@link TrainOps}, so the same wiring runs
 * in float64 (the gradient checks) and float32 (training).
 *
 * <p>Dimensions: B sequences of T tokens, M = B·T rows, C hidden, H/Hkv heads of D, F
 * intermediate, V vocabulary. Every sequence starts at position 0 (no cache in training).
 *
 * @param <A> the array type of the ops
 */
public final class TrainModel<A> {
    private final TrainOps<A> ops;
    private final ModelConfig cfg;
    private final Weights<A> w;
    private final int maxT;
    /** RoPE tables by the RoPE a forward of T tokens uses ({@link ModelConfig#rope(int, int)}: Phi-3's LongRoPE switches on T). */
    private final java.util.Map<ModelConfig.RopeConfig, RopeTable> ropes = new java.util.HashMap<>();

    /**
     * @param maxT the longest sequence that will be run (RoPE table size)
     */
    public TrainModel(TrainOps<A> ops, Weights<A> weights, int maxT) {
        this.ops = ops;
        this.cfg = weights.config();
        this.w = weights;
        this.maxT = Math.max(1, maxT);
    }

    /** The RoPE table of a forward of T tokens (every block's: the families trained here have one RoPE). */
    private RopeTable rope(int T) {
        return ropes.computeIfAbsent(cfg.rope(0, T), r -> RopeTable.of(cfg, r, maxT));
    }

    public Weights<A> weights() {
        return w;
    }

    public TrainOps<A> ops() {
        return ops;
    }

    /** What one block's backward needs, saved by its forward. */
    record BlockActs<A>(A xIn, A rstd1, A h1, A qPre, A rstdQ, A kPre, A rstdK, A q, A k, A v, A attn, A lse, A xMid,
                        A rstd2, A h2, A g, A u, A act) {
    }

    /**
     * A forward pass kept for its backward.
     *
     * @param blocks per block, its saved activations
     * @param xOut   the last block's output [M, C] (the final norm's input)
     * @param rstdF  the final norm's 1/rms [M]
     * @param hF     the final norm's output [M, C]
     * @param logits [M, V]
     */
    public record Pass<A>(int[] tokens, int B, int T, List<BlockActs<A>> blocks, A xOut, A rstdF, A hF, A logits) {
        /** The residual stream leaving block {@code layer}: [M, C] (the next block's input). */
        public A blockOutput(int layer) {
            return layer + 1 < blocks.size() ? blocks.get(layer + 1).xIn() : xOut;
        }
    }

    /** The forward of B sequences of T tokens (tokens: [B·T]); the pass holds the logits [M, V]. */
    public Pass<A> forward(int[] tokens, int B, int T) {
        if (tokens.length != B * T) {
            throw new IllegalArgumentException("tokens.length " + tokens.length + " != B·T = " + B * T);
        }
        if (T > maxT) {
            throw new IllegalArgumentException("T = " + T + " exceeds the RoPE table of " + maxT);
        }
        int C = cfg.hidden(), M = B * T, V = cfg.vocab();
        for (int t : tokens) {
            if (t < 0 || t >= V) {
                throw new IllegalArgumentException("token id " + t + " outside the vocabulary of " + V);
            }
        }
        A x = ops.zeros(M * C);
        ops.embedForward(w.embed, tokens, C, x);
        List<BlockActs<A>> acts = new ArrayList<>();
        for (Weights.Block<A> b : w.blocks) {
            BlockActs<A> a = blockForward(b, x, B, T);
            acts.add(a);
            x = blockOutput(b, a, M);
        }
        A rstdF = ops.zeros(M), hF = ops.zeros(M * C);
        ops.rmsNormForward(x, w.finalNorm, cfg.rmsNormEps(), M, C, hF, rstdF);
        A logits = ops.zeros(M * V);
        ops.linearForward(hF, w.head, null, M, C, V, logits);
        return new Pass<>(tokens.clone(), B, T, acts, x, rstdF, hF, logits);
    }

    /** The attention half of a block and the MLP's inputs; the block output comes from {@link #blockOutput}. */
    private BlockActs<A> blockForward(Weights.Block<A> b, A xIn, int B, int T) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim(), F = cfg.intermediate();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        double eps = cfg.rmsNormEps();
        // h1 = RMSNorm(x); q, k, v = h1·Wᵀ (+ b); RoPE on q, k
        A rstd1 = ops.zeros(M), h1 = ops.zeros(M * C);
        ops.rmsNormForward(xIn, b.inputNorm(), eps, M, C, h1, rstd1);
        A q = ops.zeros(M * qDim), k = ops.zeros(M * kvDim), v = ops.zeros(M * kvDim);
        ops.linearForward(h1, b.w().get(Role.Q), b.b().get(Role.Q), M, C, qDim, q);
        ops.linearForward(h1, b.w().get(Role.K), b.b().get(Role.K), M, C, kvDim, k);
        ops.linearForward(h1, b.w().get(Role.V), b.b().get(Role.V), M, C, kvDim, v);
        A qPre = null, rstdQ = null, kPre = null, rstdK = null;
        if (b.qNorm() != null) {
            // Qwen3: RMSNorm over each head's D values of q and k (M·H and M·Hkv rows), before RoPE
            qPre = q;
            kPre = k;
            q = ops.zeros(M * qDim);
            k = ops.zeros(M * kvDim);
            rstdQ = ops.zeros(M * H);
            rstdK = ops.zeros(M * Hkv);
            ops.rmsNormForward(qPre, b.qNorm(), eps, M * H, D, q, rstdQ);
            ops.rmsNormForward(kPre, b.kNorm(), eps, M * Hkv, D, k, rstdK);
        }
        RopeTable rope = rope(T);
        ops.ropeForward(q, B, T, H, D, rope);
        ops.ropeForward(k, B, T, Hkv, D, rope);
        // attn = softmax(q·kᵀ/√D)·v; xMid = x + attn·Woᵀ
        A attn = ops.zeros(M * qDim), lse = ops.zeros(B * H * T);
        ops.attentionForward(q, k, v, B, T, H, Hkv, D, attn, lse);
        A o = ops.zeros(M * C);
        ops.linearForward(attn, b.w().get(Role.O), b.b().get(Role.O), M, qDim, C, o);
        A xMid = ops.zeros(M * C);
        ops.copy(xIn, xMid);
        ops.add(xMid, o);
        // h2 = RMSNorm(xMid); act = silu(h2·Wgᵀ) ⊙ h2·Wuᵀ
        A rstd2 = ops.zeros(M), h2 = ops.zeros(M * C);
        ops.rmsNormForward(xMid, b.postNorm(), eps, M, C, h2, rstd2);
        A g = ops.zeros(M * F), u = ops.zeros(M * F), act = ops.zeros(M * F);
        ops.linearForward(h2, b.w().get(Role.GATE), b.b().get(Role.GATE), M, C, F, g);
        ops.linearForward(h2, b.w().get(Role.UP), b.b().get(Role.UP), M, C, F, u);
        ops.swigluForward(g, u, M * F, act);
        return new BlockActs<>(xIn, rstd1, h1, qPre, rstdQ, kPre, rstdK, q, k, v, attn, lse, xMid, rstd2, h2, g, u, act);
    }

    /** xOut = xMid + act·Wdᵀ: [M, C]. */
    private A blockOutput(Weights.Block<A> b, BlockActs<A> a, int M) {
        int C = cfg.hidden(), F = cfg.intermediate();
        A d = ops.zeros(M * C);
        ops.linearForward(a.act(), b.w().get(Role.DOWN), b.b().get(Role.DOWN), M, F, C, d);
        A xOut = ops.zeros(M * C);
        ops.copy(a.xMid(), xOut);
        ops.add(xOut, d);
        return xOut;
    }

    /**
     * The backward of {@code p}: adds ∂loss/∂θ into {@code grads} for every parameter θ.
     *
     * @param dLogits ∂loss/∂logits: [M, V]
     * @param dHidden per block, ∂loss/∂(that block's output) [M, C] from losses on hidden states
     *                (null entries, or a null list, for none)
     */
    public void backward(Pass<A> p, A dLogits, List<A> dHidden, Weights<A> grads) {
        int C = cfg.hidden(), V = cfg.vocab(), M = p.B() * p.T();
        // logits = hF·headᵀ
        A dhF = ops.zeros(M * C);
        ops.linearBackward(dLogits, p.hF(), w.head, M, C, V, dhF, grads.head, null);
        // hF = RMSNorm(xOut)
        A dx = ops.zeros(M * C);
        ops.rmsNormBackward(dhF, p.xOut(), w.finalNorm, p.rstdF(), M, C, dx, grads.finalNorm);
        for (int l = w.blocks.size() - 1; l >= 0; l--) {
            if (dHidden != null && dHidden.get(l) != null) {
                ops.add(dx, dHidden.get(l));
            }
            blockBackward(w.blocks.get(l), p.blocks().get(l), grads.blocks.get(l), dx, p.B(), p.T());
        }
        ops.embedBackward(dx, p.tokens(), C, grads.embed);
    }

    /** In place: dx holds ∂/∂(block output) on entry and ∂/∂(block input) on return. */
    private void blockBackward(Weights.Block<A> b, BlockActs<A> a, Weights.Block<A> g, A dx, int B, int T) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim(), F = cfg.intermediate();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        // xOut = xMid + act·Wdᵀ: dx flows to xMid unchanged, and into the MLP
        A dAct = ops.zeros(M * F);
        ops.linearBackward(dx, a.act(), b.w().get(Role.DOWN), M, F, C, dAct, g.w().get(Role.DOWN), g.b().get(Role.DOWN));
        A dg = ops.zeros(M * F), du = ops.zeros(M * F);
        ops.swigluBackward(dAct, a.g(), a.u(), M * F, dg, du);
        A dh2 = ops.zeros(M * C);
        ops.linearBackward(dg, a.h2(), b.w().get(Role.GATE), M, C, F, dh2, g.w().get(Role.GATE), g.b().get(Role.GATE));
        ops.linearBackward(du, a.h2(), b.w().get(Role.UP), M, C, F, dh2, g.w().get(Role.UP), g.b().get(Role.UP));
        ops.rmsNormBackward(dh2, a.xMid(), b.postNorm(), a.rstd2(), M, C, dx, g.postNorm());
        // xMid = xIn + attn·Woᵀ: dx flows to xIn unchanged, and into the attention
        A dAttn = ops.zeros(M * qDim);
        ops.linearBackward(dx, a.attn(), b.w().get(Role.O), M, qDim, C, dAttn, g.w().get(Role.O), g.b().get(Role.O));
        A dq = ops.zeros(M * qDim), dk = ops.zeros(M * kvDim), dv = ops.zeros(M * kvDim);
        ops.attentionBackward(dAttn, a.q(), a.k(), a.v(), a.attn(), a.lse(), B, T, H, Hkv, D, dq, dk, dv);
        RopeTable rope = rope(T);
        ops.ropeBackward(dq, B, T, H, D, rope);
        ops.ropeBackward(dk, B, T, Hkv, D, rope);
        if (b.qNorm() != null) {
            // the per-head norms: dq, dk become the gradients of the projections' outputs
            A dqPre = ops.zeros(M * qDim), dkPre = ops.zeros(M * kvDim);
            ops.rmsNormBackward(dq, a.qPre(), b.qNorm(), a.rstdQ(), M * H, D, dqPre, g.qNorm());
            ops.rmsNormBackward(dk, a.kPre(), b.kNorm(), a.rstdK(), M * Hkv, D, dkPre, g.kNorm());
            dq = dqPre;
            dk = dkPre;
        }
        A dh1 = ops.zeros(M * C);
        ops.linearBackward(dq, a.h1(), b.w().get(Role.Q), M, C, qDim, dh1, g.w().get(Role.Q), g.b().get(Role.Q));
        ops.linearBackward(dk, a.h1(), b.w().get(Role.K), M, C, kvDim, dh1, g.w().get(Role.K), g.b().get(Role.K));
        ops.linearBackward(dv, a.h1(), b.w().get(Role.V), M, C, kvDim, dh1, g.w().get(Role.V), g.b().get(Role.V));
        ops.rmsNormBackward(dh1, a.xIn(), b.inputNorm(), a.rstd1(), M, C, dx, g.inputNorm());
    }
}
