package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pruning followed by quantization, as users chain them on the command line: the zeros of a pruned
 * model stay exactly zero after GPTQ and after AWQ, read back through the folders `shrink eval` reads
 * (packed codes, fp16 scales); and SparseGPT, alone or pruning while it quantizes.
 */
class PrunedThenQuantizedTest {
    @TempDir
    Path tmp;

    static final ObjectMapper JSON = new ObjectMapper();

    static Path fixture() {
        Path p = SharedData.root().map(s -> s.resolve("models/fixture-llama-14m")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p;
    }

    @Test
    void gptqAndAwqKeepEveryZeroOfAPrunedModel() throws IOException {
        Path pruned = tmp.resolve("p24");
        BadInputTest.Run p = BadInputTest.shrink("prune", fixture().toString(), "--work-dir", pruned.toString(),
                "--method", "magnitude", "--pattern", "2:4", "-q");
        assertEquals(0, p.code(), p.err());
        String[] calib = {"--calib-dataset", "c4", "--calib-samples", "4", "--calib-seqlen", "128", "-q"};
        Path gptq = tmp.resolve("gptq");
        BadInputTest.Run g = BadInputTest.shrink(concat(new String[] {"gptq", pruned.toString(), "--work-dir", gptq.toString(),
            "--asym"}, calib));
        assertEquals(0, g.code(), g.err());
        Path awq = tmp.resolve("awq");
        BadInputTest.Run a = BadInputTest.shrink(concat(new String[] {"awq", pruned.toString(), "--work-dir", awq.toString()}, calib));
        assertEquals(0, a.code(), a.err());

        for (Path q : new Path[] {gptq, awq}) {
            long zeros = assertZerosKept(pruned, q);
            assertEquals(10321920 / 2, zeros, q + ": every pruned weight of the 42 linears");
            assertEquals("magnitude", JSON.readTree(q.resolve("config.json").toFile()).at("/shrink/sparsity/method").asText(),
                    q + ": the sparsity record travels with the config");
        }
    }

    @Test
    void sparseGptPrunesOnlyOrPrunesAndQuantizes() throws IOException {
        Path stories = GptqCommandTest.stories();
        String[] calib = {"--calib-dataset", "tinystories", "--calib-samples", "8", "--calib-seqlen", "64", "-q"};
        Path dense = tmp.resolve("sgpt50");
        BadInputTest.Run r = BadInputTest.shrink(concat(new String[] {"prune", stories.toString(), "--work-dir", dense.toString(),
            "--method", "sparsegpt", "--sparsity", "0.5"}, calib));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("113280 of 226560 weights in the processed linears are zero (0.5000)"), r.out());
        JsonNode sp = JSON.readTree(dense.resolve("config.json").toFile()).at("/shrink/sparsity");
        assertEquals("sparsegpt", sp.get("method").asText());
        assertEquals(35, sp.get("layers").size());
        String q = "model.layers.0.self_attn.q_proj.weight";
        try (ModelDir d = ModelDir.open(dense); ModelDir src = ModelDir.open(stories)) {
            assertEquals(src.weights().info(q).dtype(), d.weights().info(q).dtype(), "pruned weights keep the source dtype");
        }

        // 2:4 while quantizing to 4 bits: a GPTQ folder; the MLP (172 features) cannot be packed, so it is left out
        Path joint = tmp.resolve("sgpt24w4");
        BadInputTest.Run refused = BadInputTest.shrink(concat(new String[] {"prune", stories.toString(), "--work-dir",
            joint.toString(), "--method", "sparsegpt", "--pattern", "2:4", "--w-bits", "4", "--w-group-size", "32"}, calib));
        assertEquals(2, refused.code());
        assertTrue(refused.err().contains("mlp") && refused.err().contains("cannot be pruned or quantized as asked"), refused.err());
        assertFalse(Files.exists(joint));
        BadInputTest.Run j = BadInputTest.shrink(concat(new String[] {"prune", stories.toString(), "--work-dir",
            joint.toString(), "--method", "sparsegpt", "--pattern", "2:4", "--w-bits", "4", "--w-group-size", "32",
            "--ignore", "*mlp*"}, calib));
        assertEquals(0, j.code(), j.err());
        JsonNode cfg = JSON.readTree(joint.resolve("config.json").toFile());
        assertEquals("gptq", cfg.at("/quantization_config/quant_method").asText());
        assertEquals("2:4", cfg.at("/shrink/sparsity/pattern").asText());
        try (ModelDir d = ModelDir.open(joint)) {
            WeightSource w = WeightSources.forModel(d);
            ArchitectureSpec spec = d.spec();
            int checked = 0;
            for (int layer = 0; layer < d.config().layers(); layer++) {
                for (String lin : new String[] {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}) {
                    String name = spec.layer(layer, lin) + ".weight";
                    float[] W = w.floats(name);
                    int K = (int) w.shape(name)[1];
                    for (int i = 0; i < W.length; i += 4) {
                        int nz = 0;
                        for (int k = 0; k < 4; k++) {
                            nz += W[i + k] != 0f ? 1 : 0;
                        }
                        assertTrue(nz <= 2, name + " group at " + i / K + "," + i % K + " has " + nz + " non-zeros after dequantization");
                    }
                    checked++;
                }
            }
            assertEquals(20, checked);
        }
    }

    @Test
    void compressedSparseFormatReadsBackLikeTheDenseFolder() throws IOException {
        Path stories = GptqCommandTest.stories();
        Path dense = tmp.resolve("dense"), packed = tmp.resolve("packed");
        for (String[] f : new String[][] {{"dense", dense.toString()}, {"sparse-24-bitmask", packed.toString()}}) {
            BadInputTest.Run r = BadInputTest.shrink("prune", stories.toString(), "--work-dir", f[1], "--method", "magnitude",
                    "--pattern", "2:4", "--save-format", f[0], "-q");
            assertEquals(0, r.code(), r.err());
        }
        assertEquals("magnitude", JSON.readTree(packed.resolve("config.json").toFile()).at("/shrink/sparsity/method").asText());
        String ppl = null;
        for (Path m : new Path[] {dense, packed}) {
            BadInputTest.Run e = BadInputTest.shrink("eval", "--model", m.toString(), "--dataset", "tinystories",
                    "--max-windows", "4", "--json", "-q");
            assertEquals(0, e.code(), e.err());
            String v = JSON.readTree(e.out()).at("/results/0/ppl").asText();
            if (ppl != null) {
                assertEquals(ppl, v, "the compressed folder holds the same weights");
            }
            ppl = v;
        }
        assertTrue(GptqCommand.folderBytes(packed) < GptqCommand.folderBytes(dense));
    }

    /** Every weight that is zero in the pruned model is exactly zero in the quantized one; returns how many. */
    static long assertZerosKept(Path pruned, Path quantized) {
        long zeros = 0;
        try (ModelDir p = ModelDir.open(pruned); ModelDir q = ModelDir.open(quantized)) {
            WeightSource ps = WeightSource.of(p.weights()), qs = WeightSources.forModel(q);
            for (int layer = 0; layer < p.config().layers(); layer++) {
                for (ArchitectureSpec.Linear l : p.spec().linears()) {
                    String name = p.spec().layer(layer, l.name()) + ".weight";
                    float[] a = ps.floats(name), b = qs.floats(name);
                    for (int i = 0; i < a.length; i++) {
                        if (a[i] == 0f) {
                            assertEquals(0f, b[i], quantized.getFileName() + " " + name + "[" + i + "]");
                            zeros++;
                        }
                    }
                }
            }
        }
        return zeros;
    }

    static String[] concat(String[] a, String[] b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
