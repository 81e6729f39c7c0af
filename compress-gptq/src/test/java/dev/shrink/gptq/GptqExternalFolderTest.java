package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.tensor.DType;
import dev.shrink.eval.GptqWeightSource;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Folders written the way AutoGPTQ / GPTQModel write them, with their own packing loops (not
 * Shrink's): the reader must dequantize them exactly, act-order g_idx included.
 */
class GptqExternalFolderTest {

    @TempDir
    Path tmp;

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int HIDDEN = 32, INTER = 64, VOCAB = 16, GROUP = 16;

    /**
     * AutoGPTQ's pack loop (qlinear_cuda_old.py QuantLinear.pack) on one sequence of b-bit values,
     * uint32 arithmetic: 32/b values per word for 2/4/8 bits; for 3 bits 32 values in 3 words with
     * the two split values.
     */
    static int[] autoGptqPack(int[] v, int bits) {
        int[] out = new int[v.length * bits / 32];
        int i = 0, row = 0;
        while (row < out.length) {
            if (bits != 3) {
                for (int j = i; j < i + 32 / bits; j++) {
                    out[row] |= v[j] << (bits * (j - i));
                }
                i += 32 / bits;
                row += 1;
            } else {
                for (int j = i; j < i + 10; j++) {
                    out[row] |= v[j] << (3 * (j - i));
                }
                i += 10;
                out[row] |= v[i] << 30;
                row += 1;
                out[row] |= (v[i] >> 2) & 1;
                i += 1;
                for (int j = i; j < i + 10; j++) {
                    out[row] |= v[j] << (3 * (j - i) + 1);
                }
                i += 10;
                out[row] |= v[i] << 31;
                row += 1;
                out[row] |= (v[i] >> 1) & 0x3;
                i += 1;
                for (int j = i; j < i + 10; j++) {
                    out[row] |= v[j] << (3 * (j - i) + 2);
                }
                i += 10;
                row += 1;
            }
        }
        return out;
    }

    /** One layer as an external tool holds it before packing: intweight [K][N], zeros [G][N], scales, g_idx. */
    record Layer(String name, int N, int K, int[][] q, int[][] z, float[][] s, int[] gIdx) {
        /** w[n][k] = s[g][n] (q[k][n] - z[g][n]), g = g_idx[k] (gIdx = null: k / GROUP). */
        float[] dequant(int[] g) {
            float[] w = new float[N * K];
            for (int n = 0; n < N; n++) {
                for (int k = 0; k < K; k++) {
                    w[n * K + k] = s[g[k]][n] * (float) (q[k][n] - z[g[k]][n]);
                }
            }
            return w;
        }
    }

    static Layer randomLayer(String name, int N, int K, int bits, boolean v1, Random rnd) {
        int G = K / GROUP, maxq = (1 << bits) - 1;
        int[][] q = new int[K][N];
        for (int[] row : q) {
            for (int n = 0; n < N; n++) {
                row[n] = rnd.nextInt(maxq + 1);
            }
        }
        int[][] z = new int[G][N];
        float[][] s = new float[G][N];
        for (int g = 0; g < G; g++) {
            for (int n = 0; n < N; n++) {
                z[g][n] = v1 ? 1 + rnd.nextInt(maxq) : rnd.nextInt(maxq + 1); // v1 cannot hold 0
                s[g][n] = Float.float16ToFloat(Float.floatToFloat16(0.001f + rnd.nextFloat() * 0.05f));
            }
        }
        int[] perm = GptqTestSupport.permutation(K, rnd); // act-order: groups contiguous in a shuffled order
        int[] gIdx = new int[K];
        for (int i = 0; i < K; i++) {
            gIdx[perm[i]] = i / GROUP;
        }
        return new Layer(name, N, K, q, z, s, gIdx);
    }

    /** The tensors AutoGPTQ (v1: zeros − 1) or GPTQModel v2 would write for the layer. */
    static List<TensorData> tensors(Layer l, int bits, boolean v1, boolean gIdxAsI64) {
        int G = l.K / GROUP;
        int rowsPerCol = l.K * bits / 32;
        int[] qweight = new int[rowsPerCol * l.N];
        for (int n = 0; n < l.N; n++) {
            int[] col = new int[l.K];
            for (int k = 0; k < l.K; k++) {
                col[k] = l.q[k][n];
            }
            int[] packed = autoGptqPack(col, bits);
            for (int r = 0; r < rowsPerCol; r++) {
                qweight[r * l.N + n] = packed[r];
            }
        }
        int words = l.N * bits / 32;
        int[] qzeros = new int[G * words];
        float[] scales = new float[G * l.N];
        for (int g = 0; g < G; g++) {
            int[] zs = new int[l.N];
            for (int n = 0; n < l.N; n++) {
                zs[n] = v1 ? l.z[g][n] - 1 : l.z[g][n];
                scales[g * l.N + n] = l.s[g][n];
            }
            System.arraycopy(autoGptqPack(zs, bits), 0, qzeros, g * words, words);
        }
        List<TensorData> t = new ArrayList<>();
        t.add(TensorData.ofInts(l.name + ".qweight", new long[] {rowsPerCol, l.N}, qweight));
        t.add(TensorData.ofInts(l.name + ".qzeros", new long[] {G, words}, qzeros));
        t.add(TensorData.ofFloats(l.name + ".scales", new long[] {G, l.N}, scales, DType.F16));
        if (gIdxAsI64) {
            ByteBuffer b = ByteBuffer.allocate(8 * l.K).order(ByteOrder.LITTLE_ENDIAN);
            for (int g : l.gIdx) {
                b.putLong(g);
            }
            t.add(TensorData.ofBytes(l.name + ".g_idx", DType.I64, new long[] {l.K}, b.array()));
        } else {
            t.add(TensorData.ofInts(l.name + ".g_idx", new long[] {l.K}, l.gIdx));
        }
        return t;
    }

    private static ObjectNode llamaConfig() {
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", HIDDEN);
        c.put("intermediate_size", INTER);
        c.put("num_hidden_layers", 1);
        c.put("num_attention_heads", 2);
        c.put("num_key_value_heads", 2);
        c.put("vocab_size", VOCAB);
        c.put("max_position_embeddings", 64);
        c.put("rms_norm_eps", 1e-5);
        c.put("tie_word_embeddings", true);
        c.put("torch_dtype", "float16");
        return c;
    }

    private static float[] random(int n, Random rnd, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (rnd.nextFloat() * 2 - 1) * scale;
        }
        return a;
    }

    /**
     * A one-layer LLaMA folder, every linear GPTQ-packed by the external loops. {@code oldStyle}: the
     * settings only in quantize_config.json (early AutoGPTQ); else in config.json's quantization_config.
     */
    private Map<String, Layer> writeFolder(Path dir, int bits, boolean v1, boolean oldStyle, long seed) throws IOException {
        Files.createDirectories(dir);
        Random rnd = new Random(seed);
        ArchitectureSpec spec = ArchitectureSpec.LLAMA;
        List<TensorData> tensors = new ArrayList<>();
        tensors.add(TensorData.ofFloats("model.embed_tokens.weight", new long[] {VOCAB, HIDDEN}, random(VOCAB * HIDDEN, rnd, 1f), DType.F16));
        tensors.add(TensorData.ofFloats("model.norm.weight", new long[] {HIDDEN}, random(HIDDEN, rnd, 1f), DType.F16));
        tensors.add(TensorData.ofFloats(spec.layer(0, spec.inputNorm()), new long[] {HIDDEN}, random(HIDDEN, rnd, 1f), DType.F16));
        tensors.add(TensorData.ofFloats(spec.layer(0, spec.postAttentionNorm()), new long[] {HIDDEN}, random(HIDDEN, rnd, 1f), DType.F16));
        Map<String, Layer> layers = new HashMap<>();
        for (ArchitectureSpec.Linear lin : spec.linears()) {
            int N = switch (lin.role()) {
                case GATE, UP -> INTER;
                default -> HIDDEN;
            };
            int K = lin.role() == ArchitectureSpec.Role.DOWN ? INTER : HIDDEN;
            String x = spec.layer(0, lin.name());
            Layer l = randomLayer(x, N, K, bits, v1, rnd);
            layers.put(x, l);
            tensors.addAll(tensors(l, bits, v1, lin.role() == ArchitectureSpec.Role.UP));
        }
        SafetensorsWriter.writeModel(dir, tensors, 1L << 30, null);

        ObjectNode qc = JSON.createObjectNode();
        qc.put("bits", bits);
        qc.put("group_size", GROUP);
        qc.put("damp_percent", 0.01);
        qc.put("desc_act", true);
        qc.put("sym", false);
        qc.put("true_sequential", true);
        ObjectNode cfg = llamaConfig();
        if (oldStyle) {
            // AutoGPTQ 0.x: no quant_method, no checkpoint_format (= v1)
            qc.putNull("model_name_or_path");
            qc.put("model_file_base_name", "model");
            Files.writeString(dir.resolve("quantize_config.json"), qc.toPrettyString());
        } else {
            qc.put("quant_method", "gptq");
            qc.put("checkpoint_format", v1 ? "gptq" : "gptq_v2");
            qc.put("pack_dtype", "int32");
            qc.putObject("meta").putArray("quantizer").add("gptqmodel:4.0.0");
            cfg.set("quantization_config", qc);
        }
        Files.writeString(dir.resolve("config.json"), cfg.toPrettyString());
        return layers;
    }

    @ParameterizedTest(name = "{0}-bit v1={1} settings in quantize_config.json only={2}")
    @CsvSource({
        "4, true, true", "4, true, false", "4, false, false",
        "8, true, false", "8, false, false",
        "3, true, true", "3, false, false",
        "2, true, false", "2, false, false"})
    void readsExternalFoldersWithActOrder(int bits, boolean v1, boolean oldStyle) throws IOException {
        Path dir = tmp.resolve("ext");
        Map<String, Layer> layers = writeFolder(dir, bits, v1, oldStyle, 11L * bits + (v1 ? 1 : 0));
        try (ModelDir m = ModelDir.open(dir)) {
            WeightSource src = WeightSources.forModel(m);
            GptqWeightSource gptq = assertInstanceOf(GptqWeightSource.class, src);
            assertEquals(bits, gptq.settings().bits());
            assertEquals(v1, gptq.settings().v1());
            assertTrue(gptq.settings().descAct());
            for (Layer l : layers.values()) {
                String w = l.name + ".weight";
                assertTrue(src.has(w));
                assertArrayEquals(new long[] {l.N, l.K}, src.shape(w));
                float[] read = src.floats(w);
                assertArrayEquals(l.dequant(l.gIdx), read, l.name);
                // act-order matters: reading the groups as k / group_size would give other weights
                int[] trivial = new int[l.K];
                for (int k = 0; k < l.K; k++) {
                    trivial[k] = k / GROUP;
                }
                assertFalse(java.util.Arrays.equals(l.dequant(trivial), read), l.name + ": g_idx ignored?");
            }
            // the whole model loads and runs on these weights
            CausalLM lm = CausalLM.load(src, m.config(), m.spec(), Backends.select("cpu", 1));
            float[] logits = lm.logits(lm.hidden(new int[] {1, 5, 7, 2}, 1, 4, null, Taps.NONE), 0, 4);
            for (float v : logits) {
                assertTrue(Float.isFinite(v));
            }
        }
    }

    @Test
    void withoutGIdxTheGroupsAreSequential() throws IOException {
        Path dir = tmp.resolve("nogidx");
        Files.createDirectories(dir);
        Layer l = randomLayer("model.layers.0.mlp.down_proj", HIDDEN, INTER, 4, true, new Random(5));
        List<TensorData> t = new ArrayList<>(tensors(l, 4, true, false));
        t.removeIf(d -> d.name().endsWith(".g_idx"));
        SafetensorsWriter.writeModel(dir, t, 1L << 30, null);
        ObjectNode qc = JSON.createObjectNode().put("quant_method", "gptq").put("bits", 4).put("group_size", GROUP)
                .put("desc_act", false).put("sym", false);
        try (var ws = dev.shrink.core.safetensors.WeightStore.open(dir)) {
            GptqWeightSource src = new GptqWeightSource(ws, GptqWeightSource.settings(dir, qc));
            int[] trivial = new int[l.K];
            for (int k = 0; k < l.K; k++) {
                trivial[k] = k / GROUP;
            }
            assertArrayEquals(l.dequant(trivial), src.floats(l.name + ".weight"));

            // desc_act without g_idx cannot be read
            GptqWeightSource act = new GptqWeightSource(ws, GptqWeightSource.settings(dir, qc.deepCopy().put("desc_act", true)));
            ShrinkException e = assertThrows(ShrinkException.class, () -> act.floats(l.name + ".weight"));
            assertTrue(e.getMessage().contains("g_idx"), e.getMessage());
        }
    }

    @Test
    void badSettingsAndShapesNameTheFileAndTensor() throws IOException {
        Path dir = tmp.resolve("bad");
        writeFolder(dir, 4, true, false, 3);
        ObjectNode cfg = (ObjectNode) JSON.readTree(Files.readString(dir.resolve("config.json")));

        // unsupported bits
        ((ObjectNode) cfg.get("quantization_config")).put("bits", 5);
        Files.writeString(dir.resolve("config.json"), cfg.toPrettyString());
        try (ModelDir m = ModelDir.open(dir)) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> WeightSources.forModel(m));
            assertTrue(e.getMessage().startsWith(dir.resolve("config.json").toString()), e.getMessage());
            assertTrue(e.getMessage().contains("bits"), e.getMessage());
        }
        // unknown checkpoint format
        ((ObjectNode) cfg.get("quantization_config")).put("bits", 4).put("checkpoint_format", "marlin");
        Files.writeString(dir.resolve("config.json"), cfg.toPrettyString());
        try (ModelDir m = ModelDir.open(dir)) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> WeightSources.forModel(m));
            assertTrue(e.getMessage().contains("marlin"), e.getMessage());
        }
        // another method stays unreadable
        ((ObjectNode) cfg.get("quantization_config")).put("checkpoint_format", "gptq").put("quant_method", "bitsandbytes");
        Files.writeString(dir.resolve("config.json"), cfg.toPrettyString());
        try (ModelDir m = ModelDir.open(dir)) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> WeightSources.forModel(m));
            assertTrue(e.getMessage().contains("bitsandbytes"), e.getMessage());
        }

        // shapes that do not fit: qzeros of a wrong width; g_idx pointing past the groups
        Path dir2 = tmp.resolve("bad2");
        Files.createDirectories(dir2);
        Layer l = randomLayer("model.layers.0.mlp.up_proj", INTER, HIDDEN, 4, true, new Random(9));
        List<TensorData> t = new ArrayList<>();
        for (TensorData d : tensors(l, 4, true, false)) {
            if (d.name().endsWith(".qzeros")) {
                t.add(TensorData.ofInts(d.name(), new long[] {2, 4}, new int[8])); // should be [2, 8]
            } else {
                t.add(d);
            }
        }
        SafetensorsWriter.writeModel(dir2, t, 1L << 30, null);
        ObjectNode qc = JSON.createObjectNode().put("quant_method", "gptq").put("bits", 4).put("group_size", GROUP)
                .put("desc_act", true).put("sym", false).put("checkpoint_format", "gptq");
        try (var ws = dev.shrink.core.safetensors.WeightStore.open(dir2)) {
            GptqWeightSource src = new GptqWeightSource(ws, GptqWeightSource.settings(dir2, qc));
            ShrinkException e = assertThrows(ShrinkException.class, () -> src.floats(l.name + ".weight"));
            assertTrue(e.getMessage().startsWith(dir2.resolve("model.safetensors").toString()), e.getMessage());
            assertTrue(e.getMessage().contains("model.layers.0.mlp.up_proj.qzeros"), e.getMessage());
            assertThrows(ShrinkException.class, () -> src.shape(l.name + ".weight"));
        }
        Path dir3 = tmp.resolve("bad3");
        Files.createDirectories(dir3);
        int[] badG = l.gIdx.clone();
        badG[3] = 2; // only groups 0 and 1 exist
        List<TensorData> t3 = new ArrayList<>();
        for (TensorData d : tensors(l, 4, true, false)) {
            t3.add(d.name().endsWith(".g_idx") ? TensorData.ofInts(d.name(), new long[] {l.K}, badG) : d);
        }
        SafetensorsWriter.writeModel(dir3, t3, 1L << 30, null);
        try (var ws = dev.shrink.core.safetensors.WeightStore.open(dir3)) {
            GptqWeightSource src = new GptqWeightSource(ws, GptqWeightSource.settings(dir3, qc));
            ShrinkException e = assertThrows(ShrinkException.class, () -> src.floats(l.name + ".weight"));
            assertTrue(e.getMessage().contains("model.layers.0.mlp.up_proj.g_idx"), e.getMessage());
        }
    }
}
