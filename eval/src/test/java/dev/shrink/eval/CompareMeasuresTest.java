package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Backends;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** KL divergence against a plain-Java reference, speed, size and memory as the compare command measures them. */
class CompareMeasuresTest {

    /** KL(P‖Q) written the textbook way: softmax with exp and a sum (no max shift), Σ p·log(p/q). */
    static double referenceKl(float[] p, float[] q, int row, int V) {
        double zp = 0, zq = 0;
        for (int v = 0; v < V; v++) {
            zp += Math.exp(p[row * V + v]);
            zq += Math.exp(q[row * V + v]);
        }
        double kl = 0;
        for (int v = 0; v < V; v++) {
            double pv = Math.exp(p[row * V + v]) / zp, qv = Math.exp(q[row * V + v]) / zq;
            kl += pv * Math.log(pv / qv);
        }
        return kl;
    }

    @Test
    void klRowsMatchThePlainReferenceOnTinyLogits() {
        int rows = 5, V = 7;
        Random rnd = new Random(3);
        float[] p = new float[rows * V], q = new float[rows * V];
        for (int i = 0; i < p.length; i++) {
            p[i] = (float) (rnd.nextGaussian() * 2);
            q[i] = p[i] + (float) (rnd.nextGaussian() * 0.5);
        }
        double[] kl = new double[rows];
        KlDivergence.rows(p, q, rows, V, kl);
        for (int r = 0; r < rows; r++) {
            assertEquals(referenceKl(p, q, r, V), kl[r], 1e-12, "row " + r);
            assertTrue(kl[r] > 0);
        }
        // a hand-computed case: P = softmax(0, ln 3) = (1/4, 3/4), Q uniform: KL = 1/4 ln(1/2) + 3/4 ln(3/2)
        double[] one = new double[1];
        KlDivergence.rows(new float[] {0f, (float) Math.log(3)}, new float[] {5f, 5f}, 1, 2, one);
        assertEquals(0.25 * Math.log(0.5) + 0.75 * Math.log(1.5), one[0], 1e-7);
        // not symmetric, 0 for equal rows, invariant to a constant shift of the logits
        double[] back = new double[rows], same = new double[rows], shifted = new double[rows];
        KlDivergence.rows(q, p, rows, V, back);
        KlDivergence.rows(p, p, rows, V, same);
        float[] q2 = q.clone();
        for (int i = 0; i < q2.length; i++) {
            q2[i] += 100f;
        }
        KlDivergence.rows(p, q2, rows, V, shifted);
        for (int r = 0; r < rows; r++) {
            assertTrue(Math.abs(back[r] - kl[r]) > 1e-6);
            assertEquals(0.0, same[r]);
            assertEquals(kl[r], shifted[r], 1e-4);
        }
    }

    @Test
    void aModelAgainstItselfIsExactlyZeroAndAnotherModelIsNot() {
        var ops = Backends.select("cpu", 1);
        try (LoadedModel a = LoadedModel.open(Golden.model("stories260K-hf"), ops)) {
            int[] ids = a.tokenStream("Once upon a time there was a little girl named Lily. She loved to play outside. "
                    + "One day she saw a big dog in the park and she was scared. The dog was friendly and wanted to play.");
            KlDivergence.Reference ref = KlDivergence.reference(a.lm(), "story", ids, 16, 2);
            KlResult self = KlDivergence.evaluate(ref, a.lm(), true);
            assertEquals(0.0, self.mean());
            assertEquals(32, self.positions());
            // a candidate with one weight matrix scaled: the distributions move
            float[] w = a.lm().blocks().get(0).weight("mlp.down_proj");
            for (int i = 0; i < w.length; i++) {
                w[i] *= 3f;
            }
            a.lm().blocks().get(0).setWeight("mlp.down_proj", w);
            KlResult moved = KlDivergence.evaluate(ref, a.lm(), true);
            assertTrue(moved.mean() > 1e-4 && moved.max() >= moved.mean(), moved.toString());
            assertTrue(assertThrows(ShrinkException.class, () -> KlDivergence.reference(a.lm(), "story", ids, 16, 99))
                    .getMessage().contains("KL asks for 99"));
        }
    }

    @Test
    void speedGivesMediansWithinTheSpread() {
        try (LoadedModel m = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu", 1))) {
            int[] prompt = m.tokenStream("Once upon a time there was a little girl");
            SpeedResult s = Speed.measure(m.lm(), prompt, 4, 3);
            assertEquals(prompt.length, s.promptTokens());
            assertTrue(s.prefillMin() <= s.prefillTokensPerSecond() && s.prefillTokensPerSecond() <= s.prefillMax());
            assertTrue(s.decodeMin() <= s.decodeTokensPerSecond() && s.decodeTokensPerSecond() <= s.decodeMax());
            assertTrue(s.decodeMin() > 0 && s.prefillMin() > 0);
            assertEquals("cpu", s.backend().substring(0, 3));
        }
        assertEquals(2.0, Speed.median(new double[] {3, 1, 2}));
        assertEquals(2.5, Speed.median(new double[] {4, 1, 2, 3}));
    }

    @Test
    void sizeOfAnUncompressedModelIsItsDtypeBits() {
        // stories260K-hf is float32, the fixture bf16: every linear costs exactly 32 or 16 bits per weight
        Path stories = Golden.model("stories260K-hf");
        SizeResult s = ModelSize.of(stories, stories);
        assertEquals(32.0, s.linearBitsPerWeight());
        assertTrue(s.bitsPerWeight() > 32.0 && s.bitsPerWeight() < 32.5, "headers add a little: " + s.bitsPerWeight());
        assertEquals(1044992, s.weightBytes(), "the one weight file");
        Path fixture = Golden.model("fixture-llama-14m");
        SizeResult f = ModelSize.of(fixture, fixture);
        assertEquals(16.0, f.linearBitsPerWeight());
        assertEquals(11406456L + 11214320L + 4330616L, f.weightBytes());
        assertTrue(f.folderBytes() > f.weightBytes());
    }

    @Test
    void peakMemoryReadsAndResetsWhereLinuxAllows() {
        if (!PeakMemory.resetPeak()) {
            return; // not Linux, or /proc not writable: the compare report says "not measured"
        }
        long rss = PeakMemory.rss().orElseThrow();
        // fresh native pages (a heap array may reuse pages the JVM already holds from earlier tests)
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            java.lang.foreign.MemorySegment big = arena.allocate(64L << 20, 4096);
            for (long i = 0; i < big.byteSize(); i += 4096) {
                big.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) 1);
            }
            long peak = PeakMemory.peakRss().orElseThrow();
            assertTrue(peak >= rss + (48L << 20), "touching 64 MB raises the peak: " + rss + " -> " + peak);
            assertEquals(1, big.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4096));
        }
    }
}
