package dev.shrink.core.forward;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.quant.AwqPacking;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The writers' side of {@link FusedLinears}: Phi-3's q/k/v and gate/up, quantized or pruned apart, joined
 * into the tensors its checkpoints store. A joined linear packed once must give each part's own packed
 * words, scales and zero points side by side along N (what GPTQModel and AutoAWQ write for a fused
 * linear, and where vLLM's loader cuts it), for every GPTQ width and for AWQ's interleaved order.
 */
class FusedLinearsWriteTest {
    private static final int C = 64, HEADS = 4, KV_HEADS = 2, D = 16, F = 96, GROUP = 16;
    private static final String L = "model.layers.1.";

    /** A Phi-3 config with GQA, so that q (64 rows) and k, v (32 rows each) differ in size. */
    static ModelConfig config() throws Exception {
        ObjectNode root = (ObjectNode) new ObjectMapper().readTree("""
                {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": %d, "intermediate_size": %d,
                 "num_hidden_layers": 2, "num_attention_heads": %d, "num_key_value_heads": %d, "vocab_size": 32,
                 "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
                """.formatted(C, F, HEADS, KV_HEADS));
        return ModelConfig.parse(root, Path.of("config.json"));
    }

    private static QuantizedLinear random(String name, int N, int K, int bits, int[] gIdx, Random rnd) {
        int G = QuantizedLinear.groups(K, GROUP), maxq = (1 << bits) - 1;
        int[] codes = new int[N * K], zeros = new int[G * N];
        float[] scales = new float[G * N];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(maxq + 1);
        }
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = rnd.nextInt(maxq + 1);
            scales[i] = 0.01f + rnd.nextFloat();
        }
        return new QuantizedLinear(name, N, K, bits, GROUP, codes, scales, zeros, gIdx, null);
    }

    /** An act-order-like g_idx: groups of GROUP columns in a random column order. */
    private static int[] shuffledGIdx(int K, Random rnd) {
        int[] g = QuantizedLinear.sequentialGIdx(K, GROUP);
        for (int i = K - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1), t = g[i];
            g[i] = g[j];
            g[j] = t;
        }
        return g;
    }

    /** Columns [c0, c0 + n) of a row-major [rows, cols] int matrix. */
    private static int[] columns(int[] m, int rows, int cols, int c0, int n) {
        int[] out = new int[rows * n];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(m, r * cols + c0, out, r * n, n);
        }
        return out;
    }

    private static float[] columns(float[] m, int rows, int cols, int c0, int n) {
        float[] out = new float[rows * n];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(m, r * cols + c0, out, r * n, n);
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 4, 8})
    void gptqPackedOnceIsThePartsSideBySide(int bits) throws Exception {
        ModelConfig cfg = config();
        Random rnd = new Random(bits);
        int[] gIdx = shuffledGIdx(C, rnd);
        Map<String, QuantizedLinear> apart = new LinkedHashMap<>();
        // k first: the map's order must not matter, the stored order (q|k|v) does
        for (String[] p : new String[][] {{"k_proj", "32"}, {"q_proj", "64"}, {"v_proj", "32"}}) {
            apart.put(L + "self_attn." + p[0], random(L + "self_attn." + p[0], Integer.parseInt(p[1]), C, bits, gIdx, rnd));
        }
        QuantizedLinear o = random(L + "self_attn.o_proj", C, C, bits, gIdx, rnd);
        apart.put(o.name(), o);
        Map<String, QuantizedLinear> stored = FusedLinears.fuseQuantized(ArchitectureSpec.PHI3, cfg, apart);
        assertEquals(Set.of(L + "self_attn.qkv_proj", L + "self_attn.o_proj"), stored.keySet());
        assertEquals(o, stored.get(o.name()), "a linear stored apart passes through");

        QuantizedLinear qkv = stored.get(L + "self_attn.qkv_proj");
        int N = 128, G = C / GROUP, perWord = 32 / bits;
        assertEquals(N, qkv.N());
        assertArrayEquals(gIdx, qkv.gIdx(), "one g_idx for the three parts");
        int[] qweight = GptqPacking.packQweight(qkv.codes(), N, C, bits);
        int[] qzeros = GptqPacking.packQzeros(qkv.zeros(), G, N, bits, false);
        float[] dense = qkv.dequantize();
        int n0 = 0;
        for (String part : List.of("q_proj", "k_proj", "v_proj")) {
            QuantizedLinear q = apart.get(L + "self_attn." + part);
            int n = q.N();
            assertArrayEquals(GptqPacking.packQweight(q.codes(), n, C, bits),
                    columns(qweight, C * bits / 32, N, n0, n), part + ": qweight columns");
            assertArrayEquals(GptqPacking.packQzeros(q.zeros(), G, n, bits, false),
                    columns(qzeros, G, N / perWord, n0 / perWord, n / perWord), part + ": qzeros words");
            assertArrayEquals(q.scales(), columns(qkv.scales(), G, N, n0, n), part + ": scales columns");
            assertArrayEquals(q.dequantize(), Arrays.copyOfRange(dense, n0 * C, (n0 + n) * C), part + ": rows");
            n0 += n;
        }
    }

    @Test
    void awqPackedOnceIsThePartsSideBySide() throws Exception {
        ModelConfig cfg = config();
        Random rnd = new Random(7);
        int[] gIdx = QuantizedLinear.sequentialGIdx(C, GROUP);
        QuantizedLinear gate = random(L + "mlp.gate_proj", F, C, 4, gIdx, rnd);
        QuantizedLinear up = random(L + "mlp.up_proj", F, C, 4, gIdx, rnd);
        QuantizedLinear gu = FusedLinears.fuseQuantized(ArchitectureSpec.PHI3, cfg,
                Map.of(up.name(), up, gate.name(), gate)).get(L + "mlp.gate_up_proj");
        int N = 2 * F, G = C / GROUP;
        int[] qweight = AwqPacking.packQweight(gu.codes(), N, C);
        int[] qzeros = AwqPacking.packQzeros(gu.zeros(), G, N);
        assertArrayEquals(AwqPacking.packQweight(gate.codes(), F, C), columns(qweight, C, N / 8, 0, F / 8));
        assertArrayEquals(AwqPacking.packQweight(up.codes(), F, C), columns(qweight, C, N / 8, F / 8, F / 8));
        assertArrayEquals(AwqPacking.packQzeros(gate.zeros(), G, F), columns(qzeros, G, N / 8, 0, F / 8));
        assertArrayEquals(AwqPacking.packQzeros(up.zeros(), G, F), columns(qzeros, G, N / 8, F / 8, F / 8));
    }

    @Test
    void partsQuantizedApartOrDisagreeingAreRefused() throws Exception {
        ModelConfig cfg = config();
        Random rnd = new Random(3);
        int[] gIdx = QuantizedLinear.sequentialGIdx(C, GROUP);
        QuantizedLinear q = random(L + "self_attn.q_proj", 64, C, 4, gIdx, rnd);
        QuantizedLinear k = random(L + "self_attn.k_proj", 32, C, 4, gIdx, rnd);
        ShrinkException e = assertThrows(ShrinkException.class,
                () -> FusedLinears.fuseQuantized(ArchitectureSpec.PHI3, cfg, Map.of(q.name(), q, k.name(), k)));
        assertTrue(e.getMessage().startsWith(L + "self_attn.qkv_proj: phi3") && e.getMessage().contains("v_proj is left in float"),
                e.getMessage());

        QuantizedLinear v = random(L + "self_attn.v_proj", 32, C, 4, shuffledGIdx(C, rnd), rnd);
        assertThrows(IllegalArgumentException.class, () -> FusedLinears.fuseQuantized(ArchitectureSpec.PHI3, cfg,
                Map.of(q.name(), q, k.name(), k, v.name(), v)), "another g_idx: not from one Hessian");
        QuantizedLinear vWide = random(L + "self_attn.v_proj", 64, C, 4, gIdx, rnd);
        assertThrows(IllegalArgumentException.class, () -> FusedLinears.fuseQuantized(ArchitectureSpec.PHI3, cfg,
                Map.of(q.name(), q, k.name(), k, vWide.name(), vWide)), "64 rows where config.json implies 32");

        Map<String, QuantizedLinear> llama = Map.of(q.name(), q);
        assertTrue(FusedLinears.fuseQuantized(ArchitectureSpec.LLAMA, cfg, llama) == llama, "nothing stored fused");
    }

    @Test
    void denseTensorsJoinWithTheUnchangedPartsFromTheSource() throws Exception {
        ModelConfig cfg = config();
        Random rnd = new Random(5);
        float[] stored = new float[2 * F * C];
        for (int i = 0; i < stored.length; i++) {
            stored[i] = rnd.nextFloat();
        }
        WeightSource src = new WeightSource() {
            @Override
            public boolean has(String name) {
                return name.equals(L + "mlp.gate_up_proj.weight");
            }

            @Override
            public float[] floats(String name) {
                return stored.clone();
            }

            @Override
            public long[] shape(String name) {
                return new long[] {2 * F, C};
            }
        };
        WeightSource apart = FusedLinears.split(src, ArchitectureSpec.PHI3, cfg);
        float[] up = new float[F * C]; // the pruned up_proj: all zeros
        float[] norm = {1, 2, 3};
        Map<String, float[]> in = new LinkedHashMap<>();
        in.put(L + "input_layernorm.weight", norm);
        in.put(L + "mlp.up_proj.weight", up);
        Map<String, float[]> out = FusedLinears.fuseDense(ArchitectureSpec.PHI3, cfg, apart, in);
        assertEquals(List.of(L + "input_layernorm.weight", L + "mlp.gate_up_proj.weight"), List.copyOf(out.keySet()));
        assertTrue(out.get(L + "input_layernorm.weight") == norm);
        float[] gu = out.get(L + "mlp.gate_up_proj.weight");
        assertArrayEquals(Arrays.copyOfRange(stored, 0, F * C), Arrays.copyOfRange(gu, 0, F * C), "gate as stored");
        assertArrayEquals(up, Arrays.copyOfRange(gu, F * C, 2 * F * C), "up from the map");
        assertEquals(Set.of(L + "mlp.gate_up_proj.weight", L + "mlp.down_proj.weight"), FusedLinears.fuseNames(
                ArchitectureSpec.PHI3, cfg, Set.of(L + "mlp.gate_proj.weight", L + "mlp.up_proj.weight", L + "mlp.down_proj.weight")));
    }

    @Test
    void theSpecNamesTheStoredModules() {
        ArchitectureSpec s = ArchitectureSpec.PHI3;
        assertTrue(s.isLinearWeight(L + "self_attn.qkv_proj.weight"));
        assertTrue(s.isLinearWeight(L + "mlp.down_proj.weight"));
        assertFalse(s.isLinearWeight(L + "input_layernorm.weight"));
        // nothing quantized: the modules a Phi-3 loader has, fused names only
        assertEquals(List.of("model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj",
                "model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.gate_up_proj"), s.notConverted(1, x -> false));
        assertEquals(List.of(), s.notConverted(1, x -> true));
    }
}
