package dev.shrink.awq;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Fixtures for the AWQ tests: the shared models, and a small random model folder whose dims AWQ g32 fits. */
final class AwqTestSupport {
    private AwqTestSupport() {
    }

    static Path shared() {
        var root = SharedData.root();
        assumeTrue(root.isPresent(), "shared fixtures not found (set -Dshrink.shared or put ../shared beside the checkout)");
        return root.get();
    }

    static Path fixture() {
        Path p = shared().resolve("models/fixture-llama-14m");
        assumeTrue(Files.isDirectory(p), "missing fixture " + p);
        return p;
    }

    /** Synthetic model dims: C = 64, F = 128, 4 heads of 16, vocab 96, 2 layers; groups of 32 fit every linear. */
    static final int C = 64, F = 128, HEADS = 4, D = 16, VOCAB = 96, LAYERS = 2, GROUP = 32;

    /**
     * Writes a small random LLaMA-family folder (config.json, model.safetensors F32, a stand-in
     * tokenizer.json): {@code arch} "LlamaForCausalLM" or "Qwen2ForCausalLM" (q/k/v biases), with
     * {@code kvHeads} KV heads (4: no GQA, so the v → o mapping applies). A few channels of each norm
     * are large, so that some input channels are salient, as in real models.
     */
    static Path syntheticModel(Path dir, String arch, int kvHeads, long seed) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["%s"], "hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d,
                 "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": %d, "vocab_size": %d,
                 "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
                 "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32", "hidden_act": "silu"}
                """.formatted(arch, C, F, LAYERS, HEADS, kvHeads, D, VOCAB));
        Files.writeString(dir.resolve("tokenizer.json"), "{\"stand-in\": true}\n");
        Random rnd = new Random(seed);
        boolean qkvBias = arch.startsWith("Qwen2");
        int kv = kvHeads * D;
        List<TensorData> t = new ArrayList<>();
        t.add(TensorData.ofFloats("model.embed_tokens.weight", new long[] {VOCAB, C}, randn(VOCAB * C, 1f, rnd), DType.F32));
        for (int i = 0; i < LAYERS; i++) {
            String p = "model.layers." + i + ".";
            t.add(TensorData.ofFloats(p + "input_layernorm.weight", new long[] {C}, norm(C, rnd), DType.F32));
            t.add(linear(p + "self_attn.q_proj", HEADS * D, C, rnd));
            if (qkvBias) {
                t.add(TensorData.ofFloats(p + "self_attn.q_proj.bias", new long[] {HEADS * D}, randn(HEADS * D, 0.1f, rnd), DType.F32));
            }
            t.add(linear(p + "self_attn.k_proj", kv, C, rnd));
            if (qkvBias) {
                t.add(TensorData.ofFloats(p + "self_attn.k_proj.bias", new long[] {kv}, randn(kv, 0.1f, rnd), DType.F32));
            }
            t.add(linear(p + "self_attn.v_proj", kv, C, rnd));
            if (qkvBias) {
                t.add(TensorData.ofFloats(p + "self_attn.v_proj.bias", new long[] {kv}, randn(kv, 0.1f, rnd), DType.F32));
            }
            t.add(linear(p + "self_attn.o_proj", C, HEADS * D, rnd));
            t.add(TensorData.ofFloats(p + "post_attention_layernorm.weight", new long[] {C}, norm(C, rnd), DType.F32));
            t.add(linear(p + "mlp.gate_proj", F, C, rnd));
            t.add(linear(p + "mlp.up_proj", F, C, rnd));
            t.add(linear(p + "mlp.down_proj", C, F, rnd));
        }
        t.add(TensorData.ofFloats("model.norm.weight", new long[] {C}, norm(C, rnd), DType.F32));
        SafetensorsWriter.writeModel(dir, t, 1L << 30, null);
        return dir;
    }

    private static TensorData linear(String name, int N, int K, Random rnd) {
        return TensorData.ofFloats(name + ".weight", new long[] {N, K}, randn(N * K, (float) (1 / Math.sqrt(K)), rnd), DType.F32);
    }

    /** Norm weights near 1, every 8th channel 6× larger: salient channels. */
    private static float[] norm(int n, Random rnd) {
        float[] w = new float[n];
        for (int i = 0; i < n; i++) {
            w[i] = (float) (1 + 0.1 * rnd.nextGaussian()) * (i % 8 == 3 ? 6f : 1f);
        }
        return w;
    }

    static float[] randn(int n, float std, Random rnd) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (rnd.nextGaussian() * std);
        }
        return a;
    }

    /** n windows of T random token ids. */
    static int[][] randomWindows(int n, int T, long seed) {
        Random rnd = new Random(seed);
        int[][] w = new int[n][T];
        for (int[] row : w) {
            for (int t = 0; t < T; t++) {
                row[t] = rnd.nextInt(VOCAB);
            }
        }
        return w;
    }

    /** A deep copy of a block's weights. */
    static BlockWeights copy(BlockWeights w, ArchitectureSpec spec) {
        BlockWeights b = new BlockWeights(w.layer(), w.inputNorm().clone(), w.postAttentionNorm().clone());
        for (ArchitectureSpec.Linear l : spec.linears()) {
            int[] nk = w.shape(l.name());
            float[] bias = w.bias(l.name());
            b.putLinear(l.name(), w.weight(l.name()).clone(), bias == null ? null : bias.clone(), nk[0], nk[1]);
        }
        return b;
    }

    /** Records a copy of every linear's input of one block forward. */
    static final class Inputs implements Taps {
        final Map<String, float[]> x = new HashMap<>();

        @Override
        public void linearInput(int layer, String linear, float[] in, int M, int K) {
            x.put(linear, java.util.Arrays.copyOf(in, M * K));
        }
    }

    /** max |a − b| / max |b|. */
    static double relDiff(float[] a, float[] b) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num = Math.max(num, Math.abs(a[i] - b[i]));
            den = Math.max(den, Math.abs(b[i]));
        }
        return num / den;
    }
}
