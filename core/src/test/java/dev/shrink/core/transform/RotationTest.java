package dev.shrink.core.transform;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** The rotation matrices are orthogonal and seeded; the rotated weights are W·diag(g)·Q, Qᵀ·W, E·Q as docs/QUALITY.md says. */
class RotationTest {

    @ParameterizedTest
    @CsvSource({"384, hadamard 12x32", "64, hadamard 1x64", "128, hadamard 1x128", "80, hadamard 20x4",
        "56, random-orthogonal", "1, hadamard 1x1"})
    void isOrthogonal(int C, String kind) {
        Rotation r = Rotation.of(C, 11);
        assertEquals(kind, r.kind());
        assertOrthogonal(r.matrix(), C);
    }

    @Test
    void randomOrthogonalOfAHadamardSizeIsOrthogonalToo() {
        assertOrthogonal(Rotation.randomOrthogonal(64, 5).matrix(), 64);
    }

    @ParameterizedTest
    @ValueSource(ints = {4, 8, 12, 20, 24, 44, 48})
    void paleyMatricesAreHadamard(int m) {
        double[] h = Rotation.hadamard(m);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < m; j++) {
                assertEquals(1.0, Math.abs(h[i * m + j]), "entries are ±1");
                double d = 0;
                for (int k = 0; k < m; k++) {
                    d += h[i * m + k] * h[j * m + k];
                }
                assertEquals(i == j ? m : 0, d, 0.0, "H·Hᵀ = m·I at " + i + "," + j);
            }
        }
    }

    @Test
    void factorsAndTheirAbsence() {
        assertEquals(1, Rotation.hadamardFactor(4096));
        assertEquals(12, Rotation.hadamardFactor(3072));
        assertEquals(20, Rotation.hadamardFactor(5120));
        assertEquals(224, Rotation.hadamardFactor(896), "Qwen2-0.5B: 7·128 = 224·4, 223 a prime ≡ 3 mod 4");
        assertEquals(0, Rotation.hadamardFactor(56), "7·8: no Hadamard of order 7, 14, 28 (27 is not prime), 56 (55 is not)");
        assertThrows(IllegalArgumentException.class, () -> Rotation.hadamard(16 + 12)); // 27 is not prime
    }

    @Test
    void theSeedDecidesTheMatrix() {
        double[] a = Rotation.of(384, 0).matrix(), b = Rotation.of(384, 0).matrix(), c = Rotation.of(384, 1).matrix();
        assertArrayEquals(a, b, 0.0);
        assertFalse(Arrays.equals(a, c));
        assertArrayEquals(Rotation.of(56, 3).matrix(), Rotation.of(56, 3).matrix(), 0.0);
        assertFalse(Arrays.equals(Rotation.of(56, 3).matrix(), Rotation.of(56, 4).matrix()));
    }

    @Test
    void applyWithAStrideIsTheRowVectorTimesQ() {
        Rotation r = Rotation.of(12, 2);
        double[] q = r.matrix();
        double[] v = new double[3 * 12];
        for (int i = 0; i < v.length; i++) {
            v[i] = Math.sin(i + 1);
        }
        double[] expected = new double[12];
        for (int j = 0; j < 12; j++) {
            for (int i = 0; i < 12; i++) {
                expected[j] += v[1 + 3 * i] * q[i * 12 + j];
            }
        }
        r.apply(v, 1, 3);
        for (int j = 0; j < 12; j++) {
            assertEquals(expected[j], v[1 + 3 * j], 1e-12);
        }
    }

    /** On stories260K-hf (tied, C = 64): each rotated tensor equals its dense double-precision formula. */
    @Test
    void rotatedTensorsFollowTheFormulas() {
        Path dir = shared().resolve("models/stories260K-hf");
        assumeTrue(Files.isDirectory(dir), "missing fixture " + dir);
        try (ModelDir m = ModelDir.open(dir)) {
            ModelConfig cfg = m.config();
            ArchitectureSpec spec = m.spec();
            WeightSource src = WeightSource.of(m.weights());
            RotatedModel rot = RotatedModel.of(m, new RotatedModel.Settings(4, false));
            int C = cfg.hidden(), V = cfg.vocab(), F = cfg.intermediate();
            double[] q = rot.rotation().matrix();
            float[] ones = new float[C];
            Arrays.fill(ones, 1f);

            float[] E = src.floats(spec.embedTokens());
            assertClose(times(E, V, C, null, q), rot.floats(spec.embedTokens()), spec.embedTokens());
            assertTrue(rot.untied() && rot.has(spec.lmHead()) && !src.has(spec.lmHead()));
            assertClose(times(E, V, C, src.floats(spec.finalNorm()), q), rot.floats(spec.lmHead()), "lm_head = E·diag(g)·Q");
            assertArrayEquals(ones, rot.floats(spec.finalNorm()));

            String l1 = "model.layers.1.";
            assertArrayEquals(ones, rot.floats(l1 + "input_layernorm.weight"));
            assertArrayEquals(ones, rot.floats(l1 + "post_attention_layernorm.weight"));
            int qd = cfg.qDim(), kv = cfg.kvDim();
            assertClose(times(src.floats(l1 + "self_attn.k_proj.weight"), kv, C, src.floats(l1 + "input_layernorm.weight"), q),
                    rot.floats(l1 + "self_attn.k_proj.weight"), "k");
            assertClose(times(src.floats(l1 + "mlp.up_proj.weight"), F, C, src.floats(l1 + "post_attention_layernorm.weight"), q),
                    rot.floats(l1 + "mlp.up_proj.weight"), "up");
            assertClose(transposedTimes(q, src.floats(l1 + "self_attn.o_proj.weight"), C, qd), rot.floats(l1 + "self_attn.o_proj.weight"), "o");
            assertClose(transposedTimes(q, src.floats(l1 + "mlp.down_proj.weight"), C, F), rot.floats(l1 + "mlp.down_proj.weight"), "down");

            // the writers' view: everything changed, minus what is quantized; the untied head is added
            Map<String, float[]> modified = rot.modified(x -> x.endsWith("self_attn.q_proj"));
            assertTrue(modified.containsKey(spec.embedTokens()) && modified.containsKey(l1 + "mlp.down_proj.weight"));
            assertFalse(modified.containsKey(l1 + "self_attn.q_proj.weight"));
            assertFalse(modified.containsKey(spec.lmHead()), "not in the source: added, not modified");
            assertEquals(java.util.Set.of(spec.lmHead()), rot.added().keySet());
            var config = rot.editConfig(cfg.raw().deepCopy());
            assertFalse(config.get("tie_word_embeddings").asBoolean());

            // the same seed, the same bits
            RotatedModel again = RotatedModel.of(m, new RotatedModel.Settings(4, false));
            assertArrayEquals(rot.floats(l1 + "mlp.down_proj.weight"), again.floats(l1 + "mlp.down_proj.weight"));
            assertArrayEquals(rot.floats(spec.lmHead()), again.floats(spec.lmHead()));
            assertFalse(Arrays.equals(rot.floats(spec.embedTokens()), RotatedModel.of(m, new RotatedModel.Settings(5, false)).floats(spec.embedTokens())));
        }
    }

    /** With head-wise rotation Hd: v's rows per (kv) head ← Hdᵀ·(W_v·diag(g)·Q)_h, o's columns per head ← (Qᵀ·W_o)_h·Hd. */
    @Test
    void headWiseRotationOfValuesAndOutput() {
        Path dir = shared().resolve("models/stories260K-hf");
        assumeTrue(Files.isDirectory(dir), "missing fixture " + dir);
        try (ModelDir m = ModelDir.open(dir)) {
            ModelConfig cfg = m.config();
            WeightSource src = WeightSource.of(m.weights());
            RotatedModel rot = RotatedModel.of(m, new RotatedModel.Settings(2, true));
            assertEquals("hadamard 1x8", rot.report().get("heads"));
            int C = cfg.hidden(), D = cfg.headDim(), kv = cfg.kvDim(), qd = cfg.qDim();
            double[] q = rot.rotation().matrix(), hd = Rotation.of(D, 3).matrix();
            String l = "model.layers.3.";
            double[] v = times(src.floats(l + "self_attn.v_proj.weight"), kv, C, src.floats(l + "input_layernorm.weight"), q);
            double[] expectedV = new double[v.length];
            for (int h = 0; h < kv / D; h++) {
                for (int i = 0; i < D; i++) {
                    for (int c = 0; c < C; c++) {
                        double sum = 0;
                        for (int j = 0; j < D; j++) {
                            sum += hd[j * D + i] * v[(h * D + j) * C + c];
                        }
                        expectedV[(h * D + i) * C + c] = sum;
                    }
                }
            }
            assertClose(expectedV, rot.floats(l + "self_attn.v_proj.weight"), "v");
            double[] o = transposedTimes(q, src.floats(l + "self_attn.o_proj.weight"), C, qd);
            double[] expectedO = new double[o.length];
            for (int n = 0; n < C; n++) {
                for (int h = 0; h < qd / D; h++) {
                    for (int j = 0; j < D; j++) {
                        double sum = 0;
                        for (int i = 0; i < D; i++) {
                            sum += o[n * qd + h * D + i] * hd[i * D + j];
                        }
                        expectedO[n * qd + h * D + j] = sum;
                    }
                }
            }
            assertClose(expectedO, rot.floats(l + "self_attn.o_proj.weight"), "o");
            // q and k are untouched by the head rotation
            assertArrayEquals(RotatedModel.of(m, new RotatedModel.Settings(2, false)).floats(l + "self_attn.k_proj.weight"),
                    rot.floats(l + "self_attn.k_proj.weight"));
        }
    }

    @Test
    void refusesAPrunedModel() throws Exception {
        Path dir = shared().resolve("models/stories260K-hf");
        assumeTrue(Files.isDirectory(dir), "missing fixture " + dir);
        Path copy = Files.createTempDirectory("rot-pruned");
        try {
            for (String f : new String[] {"model.safetensors", "tokenizer.json"}) {
                Files.createSymbolicLink(copy.resolve(f), dir.resolve(f).toAbsolutePath());
            }
            String cfg = Files.readString(dir.resolve("config.json")).replaceFirst("\\{",
                    "{\"shrink\": {\"sparsity\": {\"method\": \"magnitude\", \"pattern\": \"2:4\", \"ratio\": 0.5, \"scope\": null, \"layers\": {}}},");
            Files.writeString(copy.resolve("config.json"), cfg);
            try (ModelDir m = ModelDir.open(copy)) {
                ShrinkException e = assertThrows(ShrinkException.class, () -> RotatedModel.of(m, new RotatedModel.Settings(0, false)));
                assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("pruned"), e.getMessage());
            }
        } finally {
            try (var s = Files.list(copy)) {
                for (Path p : s.toList()) {
                    Files.delete(p);
                }
            }
            Files.delete(copy);
        }
    }

    static Path shared() {
        return Path.of(System.getProperty("shrink.shared", "../shared"));
    }

    private static void assertOrthogonal(double[] q, int C) {
        for (int i = 0; i < C; i++) {
            for (int j = 0; j < C; j++) {
                double d = 0;
                for (int k = 0; k < C; k++) {
                    d += q[i * C + k] * q[j * C + k];
                }
                assertEquals(i == j ? 1.0 : 0.0, d, 1e-9, "Q·Qᵀ at " + i + "," + j);
            }
        }
    }

    /** (W ∘ g per column)·Q in double: W [N, C]. */
    private static double[] times(float[] W, int N, int C, float[] g, double[] q) {
        double[] out = new double[N * C];
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < C; k++) {
                double w = (double) W[n * C + k] * (g == null ? 1 : g[k]);
                for (int j = 0; j < C; j++) {
                    out[n * C + j] += w * q[k * C + j];
                }
            }
        }
        return out;
    }

    /** Qᵀ·W in double: W [C, K]. */
    private static double[] transposedTimes(double[] q, float[] W, int C, int K) {
        double[] out = new double[C * K];
        for (int i = 0; i < C; i++) {
            for (int c = 0; c < C; c++) {
                double qci = q[c * C + i];
                for (int k = 0; k < K; k++) {
                    out[i * K + k] += qci * W[c * K + k];
                }
            }
        }
        return out;
    }

    private static void assertClose(double[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what);
        double max = 0;
        for (double v : expected) {
            max = Math.max(max, Math.abs(v));
        }
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual[i], 1e-6 * max, what + " at " + i);
        }
    }
}
