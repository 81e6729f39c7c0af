package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.eval.LoadedModel;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * Wanda's score S_ij = |W_ij| · ‖X_j‖₂ against plain-Java references: on a tiny random case (the
 * input-channel norms gathered by the taps, the scores, the per-row mask), and in the stage, which
 * follows the reference prune_wanda: all of a block's norms come from one pass of the block before it
 * is pruned, and block 1's inputs are the outputs of block 0 <em>already pruned</em>.
 */
class WandaTest {

    @Test
    void scoresAreWeightMagnitudeTimesInputChannelNorm() {
        Random rnd = new Random(7);
        int N = 5, K = 12, M1 = 9, M2 = 11;
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            W[i] = (float) rnd.nextGaussian();
        }
        float[] x1 = new float[M1 * K], x2 = new float[M2 * K]; // two batches of inputs: [M, K]
        for (int i = 0; i < x1.length; i++) {
            x1[i] = (float) (rnd.nextGaussian() * (1 + i % K));
        }
        for (int i = 0; i < x2.length; i++) {
            x2[i] = (float) rnd.nextGaussian();
        }
        // reference ‖X_j‖₂ over all M1 + M2 rows
        double[] norm = new double[K];
        for (int j = 0; j < K; j++) {
            double s = 0;
            for (int m = 0; m < M1; m++) {
                s += (double) x1[m * K + j] * x1[m * K + j];
            }
            for (int m = 0; m < M2; m++) {
                s += (double) x2[m * K + j] * x2[m * K + j];
            }
            norm[j] = Math.sqrt(s);
        }
        // the taps see q, k and v with one shared array per batch, as the decoder calls them
        NormTaps taps = new NormTaps(3, Set.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"));
        for (float[] x : new float[][] {x1, x2}) {
            taps.nextBatch();
            for (String lin : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")) {
                taps.linearInput(3, lin, x, x == x1 ? M1 : M2, K);
            }
            taps.linearInput(2, "self_attn.q_proj", x, x == x1 ? M1 : M2, K); // another block: ignored
        }
        for (String lin : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")) {
            double[] s = taps.sumSq(lin);
            for (int j = 0; j < K; j++) {
                assertEquals(norm[j], Math.sqrt(s[j]), 1e-12 * norm[j], lin + " channel " + j);
            }
        }
        float[] S = Wanda.scores(W, N, K, taps.sumSq("self_attn.k_proj"));
        for (int n = 0; n < N; n++) {
            for (int j = 0; j < K; j++) {
                assertEquals(Math.abs(W[n * K + j]) * norm[j], S[n * K + j], 1e-6 * Math.abs(W[n * K + j]) * norm[j]);
            }
        }
        // per-row mask: the floor(0.5·K) lowest scores of each row, by a plain sort
        boolean[] mask = Wanda.mask(W, N, K, taps.sumSq("self_attn.q_proj"), new SparsityPattern.Unstructured(0.5), Scope.ROW);
        boolean[] ref = new boolean[N * K];
        for (int n = 0; n < N; n++) {
            MasksTest.referenceLowest(S, MasksTest.range(n * K, K), K / 2, ref);
        }
        assertArrayEquals(ref, mask);
        // activations change the choice: a plain magnitude mask differs
        boolean[] byMagnitude = Masks.mask(Masks.magnitude(W), N, K, new SparsityPattern.Unstructured(0.5), Scope.ROW);
        assertNotEquals(java.util.Arrays.toString(byMagnitude), java.util.Arrays.toString(mask));
    }

    /** Σ x_j² of the inputs of every linear of blocks 0 and 1 over a forward of {@code lm}. */
    static Map<String, double[]> inputSumSq(CausalLM lm, int[] tokens, int B, int T) {
        Map<String, double[]> sums = new HashMap<>();
        lm.hidden(tokens, B, T, null, new Taps() {
            @Override
            public void linearInput(int layer, String linear, float[] x, int M, int K) {
                if (layer > 1) {
                    return;
                }
                double[] s = sums.computeIfAbsent(layer + "." + linear, k -> new double[K]);
                for (int m = 0; m < M; m++) {
                    for (int j = 0; j < K; j++) {
                        s[j] += (double) x[m * K + j] * x[m * K + j];
                    }
                }
            }
        });
        return sums;
    }

    @Test
    void stageFeedsEachBlockTheOutputsOfThePrunedBlockBefore() {
        Ops ops = Backends.select("auto", 0);
        int n = 4, T = 64;
        int[][] windows = new int[n][T];
        Random rnd = new Random(11);
        for (int[] w : windows) {
            for (int t = 0; t < T; t++) {
                w[t] = 3 + rnd.nextInt(500);
            }
        }
        int[] tokens = new int[n * T];
        for (int s = 0; s < n; s++) {
            System.arraycopy(windows[s], 0, tokens, s * T, T);
        }
        PruneStage.Config cfg = new PruneStage.Config("wanda", new SparsityPattern.Unstructured(0.5), null,
                List.of(), List.of(), n);
        try (LoadedModel m = LoadedModel.open(PruneTestSupport.stories(), ops)) {
            ModelDir dir = m.dir();
            ArchitectureSpec spec = dir.spec();
            PruneStage.Result r = PruneStage.run(dir, WeightSource.of(dir.weights()), windows, cfg, ops, true);
            assertEquals("row", r.record().scope());

            Map<String, double[]> unprunedFeed = inputSumSq(m.lm(), tokens, n, T);
            BlockWeights b0 = m.lm().blocks().get(0);
            for (ArchitectureSpec.Linear l : spec.linears()) {
                b0.setWeight(l.name(), r.weights().get(spec.layer(0, l.name()) + ".weight"));
            }
            Map<String, double[]> prunedFeed = inputSumSq(m.lm(), tokens, n, T);

            int differ = 0;
            for (int layer = 0; layer < 2; layer++) {
                for (ArchitectureSpec.Linear l : spec.linears()) {
                    String name = spec.layer(layer, l.name()) + ".weight";
                    float[] W = dir.weights().floats(name);
                    float[] P = r.weights().get(name);
                    int[] nk = m.lm().blocks().get(layer).shape(l.name());
                    // block 0: every norm from the unpruned block; block 1: inputs from pruned block 0
                    Map<String, double[]> feed = layer == 0 ? unprunedFeed : prunedFeed;
                    boolean[] expected = Wanda.mask(W, nk[0], nk[1], feed.get(layer + "." + l.name()),
                            cfg.pattern(), Scope.ROW);
                    for (int i = 0; i < W.length; i++) {
                        assertEquals(expected[i] ? 0f : W[i], P[i], name + " element " + i);
                    }
                    if (layer == 1) {
                        boolean[] stale = Wanda.mask(W, nk[0], nk[1], unprunedFeed.get(layer + "." + l.name()),
                                cfg.pattern(), Scope.ROW);
                        differ += java.util.Arrays.equals(stale, expected) ? 0 : 1;
                    }
                }
            }
            // the check can tell: with block 0 unpruned, block 1's masks would differ
            assertNotEquals(0, differ, "block 1's masks depend on whether block 0 was pruned");
        }
    }
}
