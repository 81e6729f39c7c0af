package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Backends;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Gemma 2 and Gemma 3 on the one forward against a plain-Java Gemma written here from transformers'
 * modeling_gemma2.py / modeling_gemma3.py (tiny random weights, stored norm weights w used as 1 + w):
 * embeddings times √C, the four norms of the sandwich block, Gemma 3's q/k norms, RoPE per layer type,
 * query_pre_attn_scalar's scale, soft-capped scores (small caps here, so they bite), windows on the
 * sliding blocks, GeGLU, final norm, tied head, soft-capped logits. Also: decoding with the KV cache gives
 * the full forward's logits, and Gemma 3's old config keys and transformers 5's give the same model.
 * (The comparison with transformers itself is {@link ArchitectureGoldenTest}'s, on its fixtures.)
 */
class GemmaForwardTest {
    static final int C = 32, H = 4, HKV = 2, D = 16, F = 48, L = 4, V = 50, WINDOW = 5;
    static final double QPAS = 24;

    static final String GEMMA2 = """
            {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 32, "intermediate_size": 48,
             "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "vocab_size": 50, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
             "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
             "query_pre_attn_scalar": 24, "sliding_window": 5,
             "attn_logit_softcapping": 2.0, "final_logit_softcapping": 10.0}""";

    /** transformers 5's keys: layer_types and rope_parameters per layer type. */
    static final String GEMMA3_NEW = """
            {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 32,
             "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 16, "vocab_size": 50, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
             "query_pre_attn_scalar": 24, "sliding_window": 5, "final_logit_softcapping": null,
             "attn_logit_softcapping": null,
             "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
             "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}}""";

    /** The same model in the older keys: sliding_window_pattern 3 (blocks 0, 1, 3 slide), rope_local_base_freq. */
    static final String GEMMA3_OLD = """
            {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 32,
             "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 16, "vocab_size": 50, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
             "query_pre_attn_scalar": 24, "sliding_window": 5, "sliding_window_pattern": 3,
             "rope_theta": 1000000.0, "rope_local_base_freq": 100.0}""";

    static ModelConfig config(String json) throws Exception {
        return ModelConfig.parse((ObjectNode) new ObjectMapper().readTree(json), Path.of("config.json"));
    }

    /** Random stored weights of a tiny Gemma (norm weights as stored: offsets from 1). */
    static Map<String, float[]> weights(boolean qkNorms, long seed) {
        Random r = new Random(seed);
        Map<String, float[]> w = new HashMap<>();
        w.put("model.embed_tokens.weight", rand(r, V * C, 1.0));
        w.put("model.norm.weight", rand(r, C, 0.5));
        for (int l = 0; l < L; l++) {
            String p = "model.layers." + l + ".";
            w.put(p + "self_attn.q_proj.weight", rand(r, H * D * C, 0.4));
            w.put(p + "self_attn.k_proj.weight", rand(r, HKV * D * C, 0.4));
            w.put(p + "self_attn.v_proj.weight", rand(r, HKV * D * C, 0.4));
            w.put(p + "self_attn.o_proj.weight", rand(r, C * H * D, 0.3));
            w.put(p + "mlp.gate_proj.weight", rand(r, F * C, 0.4));
            w.put(p + "mlp.up_proj.weight", rand(r, F * C, 0.4));
            w.put(p + "mlp.down_proj.weight", rand(r, C * F, 0.3));
            for (String n : new String[] {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                    "post_feedforward_layernorm"}) {
                w.put(p + n + ".weight", rand(r, C, 0.5));
            }
            if (qkNorms) {
                w.put(p + "self_attn.q_norm.weight", rand(r, D, 0.5));
                w.put(p + "self_attn.k_norm.weight", rand(r, D, 0.5));
            }
        }
        return w;
    }

    static float[] rand(Random r, int n, double std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (r.nextGaussian() * std);
        }
        return a;
    }

    static WeightSource source(Map<String, float[]> w) {
        Map<String, long[]> shapes = new HashMap<>();
        for (var e : w.entrySet()) {
            String n = e.getKey();
            int len = e.getValue().length;
            long[] shape = n.endsWith("norm.weight") ? new long[] {len}
                    : n.contains("embed") ? new long[] {V, C}
                    : n.contains("q_proj") ? new long[] {H * D, C}
                    : n.contains("k_proj") || n.contains("v_proj") ? new long[] {HKV * D, C}
                    : n.contains("o_proj") ? new long[] {C, H * D}
                    : n.contains("down_proj") ? new long[] {C, F} : new long[] {F, C};
            shapes.put(n, shape);
        }
        return new WeightSource() {
            public boolean has(String name) {
                return w.containsKey(name);
            }

            public float[] floats(String name) {
                return w.get(name).clone();
            }

            public long[] shape(String name) {
                return shapes.get(name);
            }
        };
    }

    // ------------------------------------------------------------------ the plain Gemma

    /** Logits [T, V] of one sequence as transformers' Gemma computes them (double inside each op). */
    static float[] reference(Map<String, float[]> w, int[] ids, boolean gemma3, boolean[] sliding, double[] theta,
                             double attnCap, double finalCap) {
        int T = ids.length;
        float[][] x = new float[T][C];
        float normalizer = (float) Math.sqrt(C);
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < C; c++) {
                x[t][c] = w.get("model.embed_tokens.weight")[ids[t] * C + c] * normalizer;
            }
        }
        double scale = Math.pow(QPAS, -0.5);
        for (int l = 0; l < L; l++) {
            String p = "model.layers." + l + ".";
            float[][] h = norm(x, w.get(p + "input_layernorm.weight"));
            float[][] q = lin(h, w.get(p + "self_attn.q_proj.weight"), H * D);
            float[][] k = lin(h, w.get(p + "self_attn.k_proj.weight"), HKV * D);
            float[][] v = lin(h, w.get(p + "self_attn.v_proj.weight"), HKV * D);
            if (gemma3) {
                q = headNorm(q, H, w.get(p + "self_attn.q_norm.weight"));
                k = headNorm(k, HKV, w.get(p + "self_attn.k_norm.weight"));
            }
            double th = theta[sliding[l] ? 1 : 0];
            rope(q, H, th);
            rope(k, HKV, th);
            float[][] a = new float[T][H * D];
            for (int i = 0; i < T; i++) {
                for (int hd = 0; hd < H; hd++) {
                    int kv = hd / (H / HKV);
                    double[] s = new double[i + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int d = 0; d < D; d++) {
                            dot += q[i][hd * D + d] * k[j][kv * D + d];
                        }
                        dot *= scale;
                        if (attnCap > 0) {
                            dot = attnCap * Math.tanh(dot / attnCap);
                        }
                        boolean visible = !sliding[l] || j > i - WINDOW;
                        s[j] = visible ? dot : Double.NEGATIVE_INFINITY;
                        max = Math.max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) {
                        s[j] = Math.exp(s[j] - max);
                        sum += s[j];
                    }
                    for (int d = 0; d < D; d++) {
                        double o = 0;
                        for (int j = 0; j <= i; j++) {
                            o += s[j] / sum * v[j][kv * D + d];
                        }
                        a[i][hd * D + d] = (float) o;
                    }
                }
            }
            float[][] o = norm(lin(a, w.get(p + "self_attn.o_proj.weight"), C), w.get(p + "post_attention_layernorm.weight"));
            add(x, o);
            h = norm(x, w.get(p + "pre_feedforward_layernorm.weight"));
            float[][] g = lin(h, w.get(p + "mlp.gate_proj.weight"), F);
            float[][] u = lin(h, w.get(p + "mlp.up_proj.weight"), F);
            for (int t = 0; t < T; t++) {
                for (int f = 0; f < F; f++) {
                    double gv = g[t][f];
                    g[t][f] = (float) (0.5 * gv * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (gv + 0.044715 * gv * gv * gv)))
                            * u[t][f]);
                }
            }
            add(x, norm(lin(g, w.get(p + "mlp.down_proj.weight"), C), w.get(p + "post_feedforward_layernorm.weight")));
        }
        float[][] hf = norm(x, w.get("model.norm.weight"));
        float[][] logits = lin(hf, w.get("model.embed_tokens.weight"), V); // tied head
        float[] out = new float[T * V];
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < V; c++) {
                double z = logits[t][c];
                out[t * V + c] = (float) (finalCap > 0 ? finalCap * Math.tanh(z / finalCap) : z);
            }
        }
        return out;
    }

    /** Gemma's RMSNorm: x·rsqrt(mean(x²) + eps)·(1 + w) per row. */
    static float[][] norm(float[][] x, float[] w) {
        float[][] y = new float[x.length][];
        for (int t = 0; t < x.length; t++) {
            y[t] = normRow(x[t], 0, x[t].length, w);
        }
        return y;
    }

    static float[] normRow(float[] x, int off, int n, float[] w) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            ss += (double) x[off + i] * x[off + i];
        }
        double inv = 1 / Math.sqrt(ss / n + 1e-6);
        float[] y = new float[n];
        for (int i = 0; i < n; i++) {
            y[i] = (float) (x[off + i] * inv * (1.0 + w[i]));
        }
        return y;
    }

    static float[][] headNorm(float[][] x, int heads, float[] w) {
        float[][] y = new float[x.length][heads * D];
        for (int t = 0; t < x.length; t++) {
            for (int hd = 0; hd < heads; hd++) {
                System.arraycopy(normRow(x[t], hd * D, D, w), 0, y[t], hd * D, D);
            }
        }
        return y;
    }

    static void rope(float[][] x, int heads, double theta) {
        for (int t = 0; t < x.length; t++) {
            for (int hd = 0; hd < heads; hd++) {
                for (int i = 0; i < D / 2; i++) {
                    double angle = t / Math.pow(theta, 2.0 * i / D);
                    int a = hd * D + i, b = a + D / 2;
                    double x1 = x[t][a], x2 = x[t][b];
                    x[t][a] = (float) (x1 * Math.cos(angle) - x2 * Math.sin(angle));
                    x[t][b] = (float) (x2 * Math.cos(angle) + x1 * Math.sin(angle));
                }
            }
        }
    }

    static float[][] lin(float[][] x, float[] W, int N) {
        int K = x[0].length;
        float[][] y = new float[x.length][N];
        for (int t = 0; t < x.length; t++) {
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++) {
                    s += (double) x[t][k] * W[n * K + k];
                }
                y[t][n] = (float) s;
            }
        }
        return y;
    }

    static void add(float[][] x, float[][] d) {
        for (int t = 0; t < x.length; t++) {
            for (int c = 0; c < x[t].length; c++) {
                x[t][c] += d[t][c];
            }
        }
    }

    // ------------------------------------------------------------------ the tests

    static void assertNear(String what, float[] expected, float[] got, double rel) {
        double scale = 0, diff = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i]));
            diff = Math.max(diff, Math.abs(expected[i] - got[i]));
        }
        assertTrue(scale > 0.5, what + ": the reference logits are not degenerate");
        assertTrue(diff <= rel * scale, what + ": max |diff| " + diff + " of max |logit| " + scale);
    }

    @ParameterizedTest
    @CsvSource({"gemma2, cpu-reference", "gemma2, cpu", "gemma3, cpu-reference", "gemma3, cpu"})
    void logitsMatchThePlainGemmaAndTheCache(String family, String backend) throws Exception {
        boolean g3 = family.equals("gemma3");
        ModelConfig cfg = config(g3 ? GEMMA3_NEW : GEMMA2);
        ArchitectureSpec spec = ArchitectureSpec.forArchitecture(cfg.architecture(), Path.of("config.json"));
        Map<String, float[]> w = weights(g3, 7);
        CausalLM lm = CausalLM.load(source(w), cfg, spec, Backends.select(backend, 1));
        int T = 12;
        int[] ids = new Random(3).ints(2 * T, 0, V).toArray();
        float[] got = lm.logits(lm.hidden(ids, 2, T, null, Taps.NONE), 0, 2 * T);
        boolean[] sliding = g3 ? new boolean[] {true, true, false, true} : new boolean[] {true, false, true, false};
        double[] theta = g3 ? new double[] {1e6, 100} : new double[] {1e4, 1e4};
        for (int b = 0; b < 2; b++) {
            float[] expected = reference(w, Arrays.copyOfRange(ids, b * T, (b + 1) * T), g3, sliding, theta,
                    g3 ? 0 : 2.0, g3 ? 0 : 10.0);
            assertNear(family + " " + backend + " sequence " + b, expected, Arrays.copyOfRange(got, b * T * V, (b + 1) * T * V),
                    1e-4);
        }
        // decoding with the KV cache, past the window: the last tokens one at a time give the same logits
        int[] seq = Arrays.copyOf(ids, T);
        KvCache[] cache = {lm.newCache(T)};
        int prefix = T - 4;
        lm.hidden(Arrays.copyOf(seq, prefix), 1, prefix, cache, Taps.NONE);
        for (int t = prefix; t < T; t++) {
            float[] step = lm.logits(lm.hidden(new int[] {seq[t]}, 1, 1, cache, Taps.NONE), 0, 1);
            assertNear(family + " " + backend + " cached token " + t, Arrays.copyOfRange(got, t * V, (t + 1) * V), step, 1e-5);
        }
    }

    @ParameterizedTest
    @CsvSource({"cpu"})
    void gemma3OldAndNewConfigKeysGiveTheSameModel(String backend) throws Exception {
        Map<String, float[]> w = weights(true, 11);
        int[] ids = new Random(5).ints(12, 0, V).toArray();
        float[][] out = new float[2][];
        String[] configs = {GEMMA3_NEW, GEMMA3_OLD};
        for (int i = 0; i < 2; i++) {
            ModelConfig cfg = config(configs[i]);
            CausalLM lm = CausalLM.load(source(w), cfg, ArchitectureSpec.GEMMA3, Backends.select(backend, 1));
            out[i] = lm.logits(lm.hidden(ids, 1, ids.length, null, Taps.NONE), 0, ids.length);
        }
        assertArrayEquals(out[0], out[1], "rope_local_base_freq + sliding_window_pattern = rope_parameters + layer_types");
    }

    /** GPTQ's partial runs see the same linear inputs as the full Gemma block (its norms of the sub-blocks' outputs included). */
    @ParameterizedTest
    @CsvSource({"mlp.gate_proj", "mlp.down_proj"})
    void tapInputsMatchTheFullBlock(String wanted) throws Exception {
        ModelConfig cfg = config(GEMMA2);
        CausalLM lm = CausalLM.load(source(weights(false, 13)), cfg, ArchitectureSpec.GEMMA2, Backends.select("cpu", 1));
        int T = 10;
        int[] ids = new Random(9).ints(T, 0, V).toArray();
        float[] x = lm.decoder().embed(lm.embedding(), ids);
        BlockWeights b = lm.blocks().get(0);
        TapInputsTest.Recorder partial = new TapInputsTest.Recorder(), full = new TapInputsTest.Recorder();
        lm.decoder().tapInputs(b, x, 1, T, Set.of(wanted), partial);
        lm.decoder().block(b, x.clone(), 1, T, null, full);
        assertTrue(partial.inputs.containsKey(wanted));
        for (var e : partial.inputs.entrySet()) {
            assertArrayEquals(full.inputs.get(e.getKey()), e.getValue(), e.getKey());
        }
    }
}
