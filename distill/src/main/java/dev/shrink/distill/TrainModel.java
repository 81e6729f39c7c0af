package dev.shrink.distill;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The LLaMA-family decoder for training: the forward of {@link dev.shrink.core.forward.Decoder}
 * (pre-norm blocks x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)), rotate-half RoPE, grouped KV
 * heads, Qwen3's per-head RMSNorms of q and k before RoPE where the block has them, SwiGLU, final
 * RMSNorm, head; Gemma 3's sandwich block as the same wiring with data of its spec and config:
 * RMSNorms of the attention and MLP outputs before the residual adds, every norm multiplying by
 * (1 + w), embeddings times √hidden, GeGLU, a RoPE per layer type; Gemma 2's as Gemma 3's without q/k norms, with
 * query_pre_attn_scalar's attention scale and soft-capped attention scores and logits), keeping what each op's backward
 * needs, and the backward
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
    private final ArchitectureSpec spec;
    private final Weights<A> w;
    private final int maxT;
    /** RoPE tables by the RoPE a forward of T tokens uses ({@link ModelConfig#rope(int, int)}: Phi-3's LongRoPE switches on T, Gemma 3's on the layer). */
    private final Map<ModelConfig.RopeConfig, RopeTable> ropes = new HashMap<>();
    /** Arrays of ones by length, for the (1 + w) norms (made here, outside any step). */
    private final Map<Integer, A> ones = new HashMap<>();

    /**
     * @param maxT the longest sequence that will be run (RoPE table size)
     */
    public TrainModel(TrainOps<A> ops, Weights<A> weights, int maxT) {
        this.ops = ops;
        this.cfg = weights.config();
        this.spec = weights.spec();
        this.w = weights;
        this.maxT = Math.max(1, maxT);
        if (spec.unitOffsetNorms()) {
            for (int n : new int[] {cfg.hidden(), cfg.headDim()}) {
                float[] one = new float[n];
                Arrays.fill(one, 1f);
                ones.put(n, ops.adopt(one));
            }
        }
    }

    /** Block {@code layer}'s RoPE table for a forward of T tokens. */
    private RopeTable rope(int layer, int T) {
        return ropes.computeIfAbsent(cfg.rope(layer, T), r -> RopeTable.of(cfg, r, maxT));
    }

    /**
     * The multiplier of a norm: its stored weight, or 1 + w (in the arrays' precision, as the
     * evaluation's {@link ArchitectureSpec#normWeight}) for unit-offset norms; the gradient of the
     * multiplier is the stored weight's.
     */
    private A norm(A stored) {
        if (!spec.unitOffsetNorms()) {
            return stored;
        }
        A g = ops.zeros(ops.size(stored));
        ops.copy(stored, g);
        ops.add(g, ones.get(ops.size(stored)));
        return g;
    }

    /** The embeddings' multiplier: √hidden rounded to float32 (Gemma's normalizer), or 1. */
    private double embedScale() {
        return spec.scaledEmbeddings() ? (float) Math.sqrt(cfg.hidden()) : 1;
    }

    private boolean geglu() {
        return cfg.activation() == ModelConfig.Activation.GELU_TANH;
    }

    public Weights<A> weights() {
        return w;
    }

    public TrainOps<A> ops() {
        return ops;
    }

    /**
     * What one block's backward needs, saved by its forward: qPre/kPre and their 1/rms for the per-head
     * norms, oPre/dPre (the attention's and the MLP's outputs before their norms) and their 1/rms for
     * Gemma's output norms (null where the block has none).
     */
    record BlockActs<A>(A xIn, A rstd1, A h1, A qPre, A rstdQ, A kPre, A rstdK, A q, A k, A v, A attn, A lse,
                        A oPre, A rstdO, A xMid, A rstd2, A h2, A g, A u, A act, A dPre, A rstdD, A xOut) {
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
        if (embedScale() != 1) {
            ops.scale(x, embedScale());
        }
        List<BlockActs<A>> acts = new ArrayList<>();
        for (int l = 0; l < w.blocks.size(); l++) {
            BlockActs<A> a = blockForward(l, w.blocks.get(l), x, B, T);
            acts.add(a);
            x = a.xOut();
        }
        A rstdF = ops.zeros(M), hF = ops.zeros(M * C);
        ops.rmsNormForward(x, norm(w.finalNorm), cfg.rmsNormEps(), M, C, hF, rstdF);
        A logits = ops.zeros(M * V);
        ops.linearForward(hF, w.head, null, M, C, V, logits);
        if (cfg.finalSoftcap() > 0) {
            ops.softcapForward(logits, cfg.finalSoftcap(), M * V); // Gemma 2: c·tanh(z/c), as the evaluation's logits
        }
        return new Pass<>(tokens.clone(), B, T, acts, x, rstdF, hF, logits);
    }

    /** Block {@code layer} on xIn: [M, C], keeping what its backward needs. */
    private BlockActs<A> blockForward(int layer, Weights.Block<A> b, A xIn, int B, int T) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim(), F = cfg.intermediate();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        double eps = cfg.rmsNormEps();
        // h1 = RMSNorm(x); q, k, v = h1·Wᵀ (+ b); RoPE on q, k
        A rstd1 = ops.zeros(M), h1 = ops.zeros(M * C);
        ops.rmsNormForward(xIn, norm(b.inputNorm()), eps, M, C, h1, rstd1);
        A q = ops.zeros(M * qDim), k = ops.zeros(M * kvDim), v = ops.zeros(M * kvDim);
        ops.linearForward(h1, b.w().get(Role.Q), b.b().get(Role.Q), M, C, qDim, q);
        ops.linearForward(h1, b.w().get(Role.K), b.b().get(Role.K), M, C, kvDim, k);
        ops.linearForward(h1, b.w().get(Role.V), b.b().get(Role.V), M, C, kvDim, v);
        A qPre = null, rstdQ = null, kPre = null, rstdK = null;
        if (b.qNorm() != null) {
            // Qwen3, Gemma 3: RMSNorm over each head's D values of q and k (M·H and M·Hkv rows), before RoPE
            qPre = q;
            kPre = k;
            q = ops.zeros(M * qDim);
            k = ops.zeros(M * kvDim);
            rstdQ = ops.zeros(M * H);
            rstdK = ops.zeros(M * Hkv);
            ops.rmsNormForward(qPre, norm(b.qNorm()), eps, M * H, D, q, rstdQ);
            ops.rmsNormForward(kPre, norm(b.kNorm()), eps, M * Hkv, D, k, rstdK);
        }
        RopeTable rope = rope(layer, T);
        ops.ropeForward(q, B, T, H, D, rope);
        ops.ropeForward(k, B, T, Hkv, D, rope);
        // attn = softmax(cap(q·kᵀ·scale))·v (scale 1/√D, Gemma's query_pre_attn_scalar^-0.5; Gemma 2's cap c·tanh(s/c));
        // xMid = x + attn·Woᵀ (Gemma: x + RMSNorm(attn·Woᵀ))
        A attn = ops.zeros(M * qDim), lse = ops.zeros(B * H * T);
        ops.attentionForward(q, k, v, B, T, H, Hkv, D, cfg.attentionScale(), cfg.attentionSoftcap(), attn, lse);
        A o = ops.zeros(M * C);
        ops.linearForward(attn, b.w().get(Role.O), b.b().get(Role.O), M, qDim, C, o);
        A oPre = null, rstdO = null;
        if (b.attnOutNorm() != null) {
            oPre = o;
            o = ops.zeros(M * C);
            rstdO = ops.zeros(M);
            ops.rmsNormForward(oPre, norm(b.attnOutNorm()), eps, M, C, o, rstdO);
        }
        A xMid = ops.zeros(M * C);
        ops.copy(xIn, xMid);
        ops.add(xMid, o);
        // h2 = RMSNorm(xMid); act = silu(h2·Wgᵀ) ⊙ h2·Wuᵀ (gelu_tanh for GeGLU)
        A rstd2 = ops.zeros(M), h2 = ops.zeros(M * C);
        ops.rmsNormForward(xMid, norm(b.postNorm()), eps, M, C, h2, rstd2);
        A g = ops.zeros(M * F), u = ops.zeros(M * F), act = ops.zeros(M * F);
        ops.linearForward(h2, b.w().get(Role.GATE), b.b().get(Role.GATE), M, C, F, g);
        ops.linearForward(h2, b.w().get(Role.UP), b.b().get(Role.UP), M, C, F, u);
        if (geglu()) {
            ops.gegluForward(g, u, M * F, act);
        } else {
            ops.swigluForward(g, u, M * F, act);
        }
        // xOut = xMid + act·Wdᵀ (Gemma: xMid + RMSNorm(act·Wdᵀ))
        A d = ops.zeros(M * C);
        ops.linearForward(act, b.w().get(Role.DOWN), b.b().get(Role.DOWN), M, F, C, d);
        A dPre = null, rstdD = null;
        if (b.mlpOutNorm() != null) {
            dPre = d;
            d = ops.zeros(M * C);
            rstdD = ops.zeros(M);
            ops.rmsNormForward(dPre, norm(b.mlpOutNorm()), eps, M, C, d, rstdD);
        }
        A xOut = ops.zeros(M * C);
        ops.copy(xMid, xOut);
        ops.add(xOut, d);
        return new BlockActs<>(xIn, rstd1, h1, qPre, rstdQ, kPre, rstdK, q, k, v, attn, lse, oPre, rstdO, xMid, rstd2,
                h2, g, u, act, dPre, rstdD, xOut);
    }

    /**
     * The backward of {@code p}: adds ∂loss/∂θ into {@code grads} for every parameter θ.
     *
     * @param dLogits ∂loss/∂logits: [M, V]; where the logits are soft-capped (Gemma 2) it is turned in place into
     *                the gradient of the uncapped ones (the logits before the cap are recomputed from hF for that,
     *                an [M, V] array for the while, rather than kept through the step)
     * @param dHidden per block, ∂loss/∂(that block's output) [M, C] from losses on hidden states
     *                (null entries, or a null list, for none)
     */
    public void backward(Pass<A> p, A dLogits, List<A> dHidden, Weights<A> grads) {
        int C = cfg.hidden(), V = cfg.vocab(), M = p.B() * p.T();
        if (cfg.finalSoftcap() > 0) {
            // logits = c·tanh(z/c): dz = dLogits·(1 − tanh²(z/c)), z = hF·headᵀ recomputed
            A z = ops.zeros(M * V);
            ops.linearForward(p.hF(), w.head, null, M, C, V, z);
            ops.softcapBackward(dLogits, z, cfg.finalSoftcap(), M * V);
        }
        // logits = hF·headᵀ
        A dhF = ops.zeros(M * C);
        ops.linearBackward(dLogits, p.hF(), w.head, M, C, V, dhF, grads.head, null);
        // hF = RMSNorm(xOut)
        A dx = ops.zeros(M * C);
        ops.rmsNormBackward(dhF, p.xOut(), norm(w.finalNorm), p.rstdF(), M, C, dx, grads.finalNorm);
        for (int l = w.blocks.size() - 1; l >= 0; l--) {
            if (dHidden != null && dHidden.get(l) != null) {
                ops.add(dx, dHidden.get(l));
            }
            blockBackward(l, w.blocks.get(l), p.blocks().get(l), grads.blocks.get(l), dx, p.B(), p.T());
        }
        if (embedScale() != 1) {
            ops.scale(dx, embedScale()); // x = E[token]·s
        }
        ops.embedBackward(dx, p.tokens(), C, grads.embed);
    }

    /** In place: dx holds ∂/∂(block output) on entry and ∂/∂(block input) on return. */
    private void blockBackward(int layer, Weights.Block<A> b, BlockActs<A> a, Weights.Block<A> g, A dx, int B, int T) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim(), F = cfg.intermediate();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        // xOut = xMid + act·Wdᵀ (normed): dx flows to xMid unchanged, and into the MLP
        A dd = dx;
        if (b.mlpOutNorm() != null) {
            dd = ops.zeros(M * C);
            ops.rmsNormBackward(dx, a.dPre(), norm(b.mlpOutNorm()), a.rstdD(), M, C, dd, g.mlpOutNorm());
        }
        A dAct = ops.zeros(M * F);
        ops.linearBackward(dd, a.act(), b.w().get(Role.DOWN), M, F, C, dAct, g.w().get(Role.DOWN), g.b().get(Role.DOWN));
        A dg = ops.zeros(M * F), du = ops.zeros(M * F);
        if (geglu()) {
            ops.gegluBackward(dAct, a.g(), a.u(), M * F, dg, du);
        } else {
            ops.swigluBackward(dAct, a.g(), a.u(), M * F, dg, du);
        }
        A dh2 = ops.zeros(M * C);
        ops.linearBackward(dg, a.h2(), b.w().get(Role.GATE), M, C, F, dh2, g.w().get(Role.GATE), g.b().get(Role.GATE));
        ops.linearBackward(du, a.h2(), b.w().get(Role.UP), M, C, F, dh2, g.w().get(Role.UP), g.b().get(Role.UP));
        ops.rmsNormBackward(dh2, a.xMid(), norm(b.postNorm()), a.rstd2(), M, C, dx, g.postNorm());
        // xMid = xIn + attn·Woᵀ (normed): dx flows to xIn unchanged, and into the attention
        A dO = dx;
        if (b.attnOutNorm() != null) {
            dO = ops.zeros(M * C);
            ops.rmsNormBackward(dx, a.oPre(), norm(b.attnOutNorm()), a.rstdO(), M, C, dO, g.attnOutNorm());
        }
        A dAttn = ops.zeros(M * qDim);
        ops.linearBackward(dO, a.attn(), b.w().get(Role.O), M, qDim, C, dAttn, g.w().get(Role.O), g.b().get(Role.O));
        A dq = ops.zeros(M * qDim), dk = ops.zeros(M * kvDim), dv = ops.zeros(M * kvDim);
        ops.attentionBackward(dAttn, a.q(), a.k(), a.v(), a.attn(), a.lse(), B, T, H, Hkv, D, cfg.attentionScale(),
                cfg.attentionSoftcap(), dq, dk, dv);
        RopeTable rope = rope(layer, T);
        ops.ropeBackward(dq, B, T, H, D, rope);
        ops.ropeBackward(dk, B, T, Hkv, D, rope);
        if (b.qNorm() != null) {
            // the per-head norms: dq, dk become the gradients of the projections' outputs
            A dqPre = ops.zeros(M * qDim), dkPre = ops.zeros(M * kvDim);
            ops.rmsNormBackward(dq, a.qPre(), norm(b.qNorm()), a.rstdQ(), M * H, D, dqPre, g.qNorm());
            ops.rmsNormBackward(dk, a.kPre(), norm(b.kNorm()), a.rstdK(), M * Hkv, D, dkPre, g.kNorm());
            dq = dqPre;
            dk = dkPre;
        }
        A dh1 = ops.zeros(M * C);
        ops.linearBackward(dq, a.h1(), b.w().get(Role.Q), M, C, qDim, dh1, g.w().get(Role.Q), g.b().get(Role.Q));
        ops.linearBackward(dk, a.h1(), b.w().get(Role.K), M, C, kvDim, dh1, g.w().get(Role.K), g.b().get(Role.K));
        ops.linearBackward(dv, a.h1(), b.w().get(Role.V), M, C, kvDim, dh1, g.w().get(Role.V), g.b().get(Role.V));
        ops.rmsNormBackward(dh1, a.xIn(), norm(b.inputNorm()), a.rstd1(), M, C, dx, g.inputNorm());
    }
}
