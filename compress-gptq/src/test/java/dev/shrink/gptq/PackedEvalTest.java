package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTestSupport.fixture;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.eval.WeightSources;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A GPTQ folder evaluated on the cpu backend keeps its 4- and 8-bit linears packed (Ops.packed):
 * the same logits, bit for bit, as the same folder dequantized to float32 (float arrays through the
 * backend's GEMM, and float linears in its own layout, Ops.dense), with the linears' memory a fraction
 * of float32's; cpu-reference dequantizes as before.
 */
class PackedEvalTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @CsvSource({"4, 128", "8, 128", "4, -1"})
    void packedLogitsAreTheDequantizedOnes(int bits, int group) {
        Path model = fixture();
        Path out = tmp.resolve("rtn-w" + bits);
        GptqStage.Config cfg = new GptqStage.Config("rtn", QuantScheme.of(bits, group, true), false, false, true, 0.01,
                128, 8);
        try (ModelDir dir = ModelDir.open(model)) {
            GptqStage.Result r = GptqStage.run(dir, WeightSource.of(dir.weights()), new int[][] {{0}}, cfg,
                    Backends.select("cpu", 0), true);
            GptqCheckpoint.write(dir, out, r.quantized(), new GptqFormat(bits, group, true, false, false, true, 0.01,
                    "shrink:test"), null);
        }
        Ops cpu = Backends.select("cpu", 0);
        int[] tokens = new Random(7).ints(2 * 64, 3, 8000).toArray();
        try (ModelDir dir = ModelDir.open(out)) {
            WeightSource src = WeightSources.forModel(dir);
            WeightSource floats = new WeightSource() { // the same folder, every linear dequantized
                public boolean has(String n) {
                    return src.has(n);
                }

                public float[] floats(String n) {
                    return src.floats(n);
                }

                public long[] shape(String n) {
                    return src.shape(n);
                }

                public QuantizedLinear quantized(String prefix) {
                    return null;
                }
            };
            CausalLM packed = CausalLM.load(src, dir.config(), dir.spec(), cpu);
            CausalLM dense = CausalLM.load(floats, dir.config(), dir.spec(), cpu, false); // float arrays, Sgemm
            CausalLM panels = CausalLM.load(floats, dir.config(), dir.spec(), cpu); // float, the backend's layout
            BlockWeights b0 = packed.blocks().get(0);
            String down = dir.spec().linear(dev.shrink.core.model.ArchitectureSpec.Role.DOWN).name();
            assertNotNull(b0.packed(down), "the cpu backend keeps the linear packed");
            assertNull(dense.blocks().get(0).packed(down));
            int[] nk = b0.shape(down);
            double ratio = b0.packed(down).bytes() / (4.0 * nk[0] * nk[1]);
            System.out.printf("w%d g%d: down_proj packed %d B = %.3f of float32%n", bits, group, b0.packed(down).bytes(),
                    ratio);
            assertTrue(ratio < bits / 32.0 + 0.05, "packed memory " + ratio + " of float32");
            float[] a = packed.logits(packed.hidden(tokens, 2, 64, null, Taps.NONE), 0, 128);
            float[] b = dense.logits(dense.hidden(tokens, 2, 64, null, Taps.NONE), 0, 128);
            assertArrayEquals(b, a, "bit for bit");
            assertNotNull(panels.blocks().get(0).packed(down), "float linears in the cpu backend's layout");
            float[] c = panels.logits(panels.hidden(tokens, 2, 64, null, Taps.NONE), 0, 128);
            assertArrayEquals(b, c, "float panels: bit for bit");
            float[] wFloat = dense.blocks().get(0).weight(down);
            assertArrayEquals(wFloat, b0.weight(down), "the packed linear's weights read back: the dequantized ones");
            assertArrayEquals(wFloat, panels.blocks().get(0).weight(down), "the float panels' weights read back");
            assertArrayEquals(dense.embedding(), packed.embedding(), "the tied embedding read back from the head");
            // what the model holds is about the folder's size, not float32's (issue 19): codes, bf16 embedding/head
            long file = 0;
            try (var files = java.nio.file.Files.list(out)) {
                for (Path f : files.filter(f -> f.toString().endsWith(".safetensors")).toList()) {
                    file += java.nio.file.Files.size(f);
                }
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
            System.out.printf("w%d g%d: model holds %d B, its safetensors %d B, float32 %d B%n", bits, group,
                    packed.bytes(), file, dense.bytes());
            assertTrue(packed.bytes() < 1.25 * file && packed.bytes() > 0.75 * file,
                    "held " + packed.bytes() + " B for a folder of " + file + " B");
            CausalLM reference = CausalLM.load(src, dir.config(), dir.spec(), Backends.select("cpu-reference", 1));
            assertNull(reference.blocks().get(0).packed(down), "cpu-reference dequantizes");
            assertEquals(dir.config().layers(), packed.blocks().size());
        }
    }
}
