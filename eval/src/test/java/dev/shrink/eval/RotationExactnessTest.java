package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.transform.Rotation;
import dev.shrink.core.transform.RotatedModel;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The rotation before quantization is exact in float32 (docs/QUALITY.md, "Rotation"): the rotated
 * fixture (norms folded, residual stream times Q, the tied head untied) gives the source's logits and
 * perplexity up to float rounding, for a randomized Hadamard Q (H_12 ⊗ H_32 at C = 384) and a dense
 * random orthogonal one with the head-wise rotation of the values on top.
 */
class RotationExactnessTest {
    private static final Ops OPS = Backends.select("cpu", 0);
    private static LoadedModel m;
    private static int[] ids;

    @BeforeAll
    static void load() {
        m = LoadedModel.open(Golden.model("fixture-llama-14m"), OPS);
        ids = m.tokenStream(EvalText.load("heldout").text());
    }

    @AfterAll
    static void close() {
        if (m != null) {
            m.close();
        }
    }

    @Test
    void hadamardRotationKeepsLogitsAndPerplexity() {
        ModelDir dir = m.dir();
        RotatedModel rotated = RotatedModel.of(WeightSource.of(dir.weights()), dir.config(), dir.spec(), new RotatedModel.Settings(0, false));
        assertEquals("hadamard 12x32", rotated.rotation().kind());
        assertTrue(rotated.untied(), "the fixture ties its head and its final norm is not constant: untied");
        CausalLM r = CausalLM.load(rotated, dir.config(), dir.spec(), OPS);
        assertAllNormsOne(r);
        assertFalse(r.tied(), "an explicit head beside the embedding");
        assertTrue(m.lm().tied(), "the source's head is its embedding");
        assertFalse(Arrays.equals(m.lm().embedding(), r.embedding()), "the embedding is rotated");

        assertSameLogits(m.lm(), r, Arrays.copyOf(ids, 2 * 64), 2, 64);
        PplResult a = Perplexity.evaluate(m.lm(), "heldout", ids, 128, 2, true);
        PplResult b = Perplexity.evaluate(r, "heldout", ids, 128, 2, true);
        assertEquals(a.ppl(), b.ppl(), 1e-5 * a.ppl(), "perplexity " + a.ppl() + " vs rotated " + b.ppl());
    }

    @Test
    void randomOrthogonalWithHeadWiseRotationKeepsLogits() {
        ModelDir dir = m.dir();
        Rotation q = Rotation.randomOrthogonal(dir.config().hidden(), 7), hd = Rotation.of(dir.config().headDim(), 8);
        assertEquals("hadamard 1x64", hd.kind());
        CausalLM r = CausalLM.load(RotatedModel.of(WeightSource.of(dir.weights()), dir.config(), dir.spec(), q, hd),
                dir.config(), dir.spec(), OPS);
        assertSameLogits(m.lm(), r, Arrays.copyOfRange(ids, 1000, 1000 + 64), 1, 64);
    }

    /** A tied model whose final norm is a constant keeps one matrix for embedding and head, and stays exact. */
    @Test
    void tiedHeadWithConstantFinalNormStaysTied() {
        ModelDir dir = m.dir();
        WeightSource plain = WeightSource.of(dir.weights());
        String finalNorm = dir.spec().finalNorm();
        WeightSource constNorm = new WeightSource() {
            @Override
            public boolean has(String name) {
                return plain.has(name);
            }

            @Override
            public float[] floats(String name) {
                if (name.equals(finalNorm)) {
                    float[] g = new float[dir.config().hidden()];
                    Arrays.fill(g, 2.5f);
                    return g;
                }
                return plain.floats(name);
            }

            @Override
            public long[] shape(String name) {
                return plain.shape(name);
            }
        };
        RotatedModel rotated = RotatedModel.of(constNorm, dir.config(), dir.spec(), new RotatedModel.Settings(3, false));
        assertFalse(rotated.untied());
        assertFalse(rotated.has(dir.spec().lmHead()));
        assertTrue(rotated.added().isEmpty());
        CausalLM src = CausalLM.load(constNorm, dir.config(), dir.spec(), OPS);
        CausalLM r = CausalLM.load(rotated, dir.config(), dir.spec(), OPS);
        assertTrue(r.tied(), "still tied");
        assertSameLogits(src, r, Arrays.copyOf(ids, 64), 1, 64);
    }

    private static void assertAllNormsOne(CausalLM r) {
        for (float v : r.finalNormWeight()) {
            assertEquals(1f, v);
        }
        r.blocks().forEach(b -> {
            for (int c = 0; c < b.inputNorm().length; c++) {
                assertEquals(1f, b.inputNorm()[c]);
                assertEquals(1f, b.postAttentionNorm()[c]);
            }
        });
    }

    /** Every logit of the rotated model within 1e-5 of the largest |logit|,. */
    private static void assertSameLogits(CausalLM a, CausalLM b, int[] tokens, int B, int T) {
        float[] la = a.logits(a.hidden(tokens, B, T, null, Taps.NONE), 0, B * T);
        float[] lb = b.logits(b.hidden(tokens, B, T, null, Taps.NONE), 0, B * T);
        double maxAbs = 0, maxDiff = 0;
        for (int i = 0; i < la.length; i++) {
            maxAbs = Math.max(maxAbs, Math.abs(la[i]));
            maxDiff = Math.max(maxDiff, Math.abs(la[i] - lb[i]));
        }
        System.out.printf("rotation: max |logit diff| %.3g of max |logit| %.3g (rel %.3g)%n", maxDiff, maxAbs, maxDiff / maxAbs);
        assertTrue(maxAbs > 1, "logits are not trivial");
        assertTrue(maxDiff <= 1e-5 * maxAbs, "max |logit diff| " + maxDiff + " vs max |logit| " + maxAbs);
    }
}
