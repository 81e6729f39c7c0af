package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.tensor.DType;
import dev.shrink.eval.LoadedModel;
import dev.shrink.kernels.cpu.VectorOps;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link DistillRun} end to end on stories260K-hf: a pruned folder student (its zeros exact in
 * the written file, shrink.sparsity carried over, the report, the plot, perplexity before and
 * after through the evaluator), a layer-dropped student with the hidden-state loss (renumbered
 * layers, a folder that loads and computes what the trained weights compute), and the refusals
 * (another vocabulary, a quantized student, evaluation text, bad layers), each leaving no folder.
 */
class DistillRunTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    static DistillStage.Config config(int steps, double hidden) {
        return new DistillStage.Config(steps, 2, 2, 32, 1e-3, 1, 1.0, 1.0, 1.0, Losses.Kind.KL, hidden, null,
                AdamW.Hyper.TORCH, 0, 0);
    }

    static DistillRun.Request request(Path teacher, Path student, List<Integer> drop, Path out, DistillStage.Config cfg,
                                      String data, String dtype) {
        return new DistillRun.Request(teacher, student, drop, out, false, cfg, data, null, false, false, null, false,
                false, dtype, Map.of("stage", "distill"));
    }

    /** Training text: the first 40 C4 sample documents as one .txt file (tokenizing all of C4 would take longer). */
    static String text(Path tmp) {
        Path f = tmp.resolve("train.txt");
        if (!Files.exists(f)) {
            try {
                Files.writeString(f, String.join("\n\n", TrainText.documents("c4", null, false).subList(0, 40)));
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
        return f.toString();
    }

    /** A magnitude-2:4 pruned copy of stories260K-hf written as `shrink prune` writes it. */
    static Path prunedFolder(Path tmp) {
        Path out = tmp.resolve("pruned");
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            DistillStage.Student s = DistillStageTest.pruned(dir, DistillStageTest.ops());
            Map<String, float[]> weights = new LinkedHashMap<>();
            Map<String, Double> layers = new LinkedHashMap<>();
            s.masks().forEach((name, z) -> {
                weights.put(name, s.weights().get(name));
                layers.put(name.substring(0, name.length() - ".weight".length()), (double) z.length / s.weights().get(name).length);
            });
            PrunedCheckpoint.write(dir, out, weights, new SparsityRecord("magnitude", new SparsityPattern.NofM(2, 4), null,
                    layers), null, false);
        }
        return out;
    }

    @Test
    void prunedStudentFolder(@TempDir Path tmp) throws Exception {
        Path pruned = prunedFolder(tmp);
        Path out = tmp.resolve("kd");
        List<String> evaluated = new ArrayList<>();
        DistillRun.Evaluator ev = (label, weights, cfg, spec, tok) -> {
            evaluated.add(label);
            CausalLM lm = CausalLM.load(weights, cfg, spec, new VectorOps(2));
            // mean NLL of a fixed token window, as a stand-in perplexity
            int[] ids = tok.encode("Once upon a time there was a little girl who liked to play in the park with her dog.");
            float[] logits = lm.logits(lm.hidden(ids, 1, ids.length, null, Taps.NONE), 0, ids.length);
            double[] nll = new double[ids.length - 1];
            int V = cfg.vocab();
            lm.decoder().ops().crossEntropy(java.util.Arrays.copyOf(logits, (ids.length - 1) * V), ids.length - 1, V,
                    java.util.Arrays.copyOfRange(ids, 1, ids.length), nll);
            double mean = java.util.Arrays.stream(nll).average().orElseThrow();
            return List.of(new DistillRun.Ppl("probe", ids.length, 1, ids.length - 1, Math.exp(mean)));
        };
        DistillRun.Outcome o = DistillRun.run(request(TestSupport.stories(), pruned, null, out, config(6, 0), text(tmp), "source"),
                ModelDirSource::of, ev, DistillStageTest.ops(), DistillStage.Listener.NONE);
        assertEquals(List.of("teacher", "student before", "student after"), evaluated);
        assertTrue(o.after().get(0).ppl() < o.before().get(0).ppl(), o.before() + " → " + o.after());

        try (ModelDir written = ModelDir.open(out); ModelDir src = ModelDir.open(pruned)) {
            // every pruned zero is an exact zero in the file; the trained values are the master weights (f32 source)
            for (String name : src.weights().names()) {
                float[] w = written.weights().floats(name), w0 = src.weights().floats(name);
                float[] master = o.result().weights().get(name);
                assertNotNull(master, name);
                assertArrayEquals(master, w, name);
                if (name.contains("_proj")) {
                    for (int i = 0; i < w0.length; i++) {
                        if (w0[i] == 0f) {
                            assertEquals(0, Float.floatToRawIntBits(w[i]), name + "[" + i + "]");
                        }
                    }
                }
            }
            SparsityRecord rec = SparsityRecord.fromConfig(written.config().raw());
            assertEquals("2:4", rec.pattern().label());
            rec.layers().values().forEach(f -> assertEquals(0.5, f, 1e-12));
            assertEquals(35, rec.layers().size());
        }
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals("distill", report.get("stage").asText());
        assertEquals(6, report.get("curve").size());
        assertEquals(6, report.path("training").path("steps").asInt());
        assertEquals(0.5 * o.result().parameters() > 0, true);
        assertEquals(o.result().maskedZeros(), report.path("training").path("masked_zeros").asLong());
        assertTrue(report.path("perplexity").path("after").get(0).path("ppl").asDouble() > 1);
        String svg = Files.readString(out.resolve(DistillRun.CURVE_FILE));
        assertTrue(svg.startsWith("<svg") && svg.contains("<polyline") && svg.trim().endsWith("</svg>"));
        assertTrue(Files.isRegularFile(out.resolve("tokenizer.json")));
        assertFalse(Files.exists(tmp.resolve("kd.checkpoint")), "the checkpoint is removed after success");
        // the folder loads as `shrink eval` loads it
        try (LoadedModel m = LoadedModel.open(out, new VectorOps(2))) {
            assertEquals(5, m.lm().blocks().size());
        }
    }

    @Test
    void savedAsBf16HoldsTheRoundedMasterWeights(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("kd16");
        DistillRun.Outcome o = DistillRun.run(request(TestSupport.stories(), prunedFolder(tmp), null, out, config(2, 0),
                text(tmp), "bf16"), ModelDirSource::of, null, DistillStageTest.ops(), DistillStage.Listener.NONE);
        assertEquals(DType.BF16, o.savedAs());
        try (ModelDir written = ModelDir.open(out)) {
            assertEquals("bfloat16", written.config().torchDtype());
            String name = "model.layers.2.mlp.down_proj.weight";
            assertEquals(DType.BF16, written.weights().info(name).dtype());
            assertArrayEquals(StudentWriter.rounded(o.result().weights().get(name), DType.BF16),
                    written.weights().floats(name));
        }
    }

    @Test
    void layerDroppedStudentWithHiddenStateLoss(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("drop");
        F32TrainOps ops = DistillStageTest.ops();
        // the copy starts as the teacher's layers 0, 2, 4
        try (ModelDir t = ModelDir.open(TestSupport.stories())) {
            Students s = Students.dropLayers(t, List.of(3, 1), ops);
            assertArrayEquals(new int[] {0, 2, 4}, s.kept());
            assertEquals(3, s.config().layers());
            assertArrayEquals(t.weights().floats("model.layers.2.self_attn.q_proj.weight"),
                    s.student().weights().get("model.layers.1.self_attn.q_proj.weight"));
            assertArrayEquals(t.weights().floats("model.layers.4.mlp.down_proj.weight"),
                    s.student().weights().get("model.layers.2.mlp.down_proj.weight"));
        }
        DistillRun.Outcome o = DistillRun.run(request(TestSupport.stories(), null, List.of(1, 3), out, config(4, 1.0), text(tmp),
                "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE);
        for (DistillStage.StepRecord r : o.result().curve()) {
            assertTrue(r.hidden() > 0 && Double.isFinite(r.hidden()), "hidden-state loss " + r.hidden());
            assertEquals(r.kl() + r.hidden(), r.loss(), 1e-9 * r.loss());
        }
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals("[0,2,4]", report.path("options").path("layer_map").toString());
        try (ModelDir written = ModelDir.open(out)) {
            assertEquals(3, written.config().layers());
            assertFalse(written.weights().has("model.layers.3.self_attn.q_proj.weight"));
            // the folder computes what the trained weights compute
            WeightSource trained = o.result().weights().asSource(ops);
            CausalLM a = CausalLM.load(WeightSource.of(written.weights()), written.config(), written.spec(), ops.ops());
            CausalLM b = CausalLM.load(trained, written.config(), written.spec(), ops.ops());
            int[] tokens = new Random(3).ints(24, 0, 512).toArray();
            assertArrayEquals(b.logits(b.hidden(tokens, 1, 24, null, Taps.NONE), 0, 24),
                    a.logits(a.hidden(tokens, 1, 24, null, Taps.NONE), 0, 24));
        }
    }

    @Test
    void refusals(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("out");
        Path stories = TestSupport.stories(), fixture = TestSupport.fixture();
        F32TrainOps ops = DistillStageTest.ops();
        ShrinkException vocab = assertThrows(ShrinkException.class, () -> DistillRun.run(request(fixture, stories, null, out,
                config(2, 0), text(tmp), "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE));
        assertEquals("teacher " + fixture + " has a vocabulary of 8192 tokens, student " + stories
                + " one of 512; distillation compares them token by token", vocab.getMessage());

        String txt = text(tmp);
        ShrinkException heldout = assertThrows(ShrinkException.class, () -> DistillRun.run(request(stories, null, List.of(1),
                out, config(2, 0), txt + ",heldout", "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE));
        assertTrue(heldout.getMessage().startsWith("training text 'heldout' is evaluation text (the heldout perplexity "
                + "preset); pass --allow-eval-text"), heldout.getMessage());
        Path wiki = TestSupport.shared().resolve("datasets/ptb/ptb.test.txt");
        ShrinkException file = assertThrows(ShrinkException.class, () -> TrainText.documents(wiki.toString(), null, false));
        assertTrue(file.getMessage().startsWith("training text " + wiki + " is evaluation text"), file.getMessage());
        assertFalse(TrainText.documents(wiki.toString(), null, true).isEmpty(), "allowed when asked");

        ShrinkException range = assertThrows(ShrinkException.class, () -> DistillRun.run(request(stories, null, List.of(5),
                out, config(2, 0), text(tmp), "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE));
        assertEquals("--drop-layers 5: the teacher has layers 0..4", range.getMessage());
        ShrinkException all = assertThrows(ShrinkException.class, () -> DistillRun.run(request(stories, null,
                List.of(0, 1, 2, 3, 4), out, config(2, 0), text(tmp), "source"), ModelDirSource::of, null, ops,
                DistillStage.Listener.NONE));
        assertEquals("--drop-layers would drop all 5 layers", all.getMessage());
        ShrinkException both = assertThrows(ShrinkException.class, () -> request(stories, stories, List.of(1), out,
                config(2, 0), text(tmp), "source"));
        assertEquals("--student and --drop-layers exclude each other: give one", both.getMessage());

        // a quantized student (a copy of stories whose config.json declares a quantization_config)
        Path q = tmp.resolve("quantized");
        Files.createDirectories(q);
        for (String f : List.of("model.safetensors", "tokenizer.json")) {
            Files.copy(stories.resolve(f), q.resolve(f));
        }
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(stories.resolve("config.json").toFile());
        cfg.putObject("quantization_config").put("quant_method", "gptq");
        Files.writeString(q.resolve("config.json"), cfg.toString());
        ShrinkException quant = assertThrows(ShrinkException.class, () -> DistillRun.run(request(stories, q, null, out,
                config(2, 0), text(tmp), "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE));
        assertEquals(q.resolve("config.json") + ": the student must be an unquantized model (it has a quantization_config); "
                + "distill before quantizing (prune → distill → gptq)", quant.getMessage());

        // another family (a copy of stories declared as Mistral)
        Path mistral = tmp.resolve("mistral");
        Files.createDirectories(mistral);
        for (String f : List.of("model.safetensors", "tokenizer.json")) {
            Files.copy(stories.resolve(f), mistral.resolve(f));
        }
        var mc = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(stories.resolve("config.json").toFile());
        mc.putArray("architectures").add("MistralForCausalLM");
        mc.put("model_type", "mistral");
        Files.writeString(mistral.resolve("config.json"), mc.toString());
        ShrinkException family = assertThrows(ShrinkException.class, () -> DistillRun.run(request(stories, mistral, null, out,
                config(2, 0), txt, "source"), ModelDirSource::of, null, ops, DistillStage.Listener.NONE));
        assertEquals("teacher " + stories + " is a llama model, student " + mistral + " a mistral one; distillation needs "
                + "one family", family.getMessage());

        // Gemma 3 with a training device (any TrainOps given as one): GeGLU has no GPU kernel yet
        Path gemma3 = dev.shrink.eval.ArchFixtures.path("gemma3");
        ShrinkException gpu = assertThrows(ShrinkException.class, () -> DistillRun.run(request(gemma3, null, List.of(1), out,
                config(2, 0), txt, "source"), ModelDirSource::of, null, ops, new F64TrainOps(), DistillStage.Listener.NONE));
        assertEquals(gemma3.resolve("config.json") + ": gemma3's GeGLU has no GPU training kernel yet; distill it on the"
                + " CPU (--device cpu)", gpu.getMessage());
        // Gemma 2 likewise, naming its scale and soft-caps too
        Path gemma2 = dev.shrink.eval.ArchFixtures.path("gemma2");
        ShrinkException gpu2 = assertThrows(ShrinkException.class, () -> DistillRun.run(request(gemma2, null, List.of(1), out,
                config(2, 0), txt, "source"), ModelDirSource::of, null, ops, new F64TrainOps(), DistillStage.Listener.NONE));
        assertEquals(gemma2.resolve("config.json") + ": gemma2's GeGLU, query_pre_attn_scalar's attention scale, soft-capped"
                + " attention scores and logits have no GPU training kernel yet; distill it on the CPU (--device cpu)",
                gpu2.getMessage());
        assertFalse(Files.exists(out), "no output after a refusal");
        assertFalse(Files.exists(tmp.resolve("out.checkpoint")), "no checkpoint after a refusal");
    }

    /** Teachers here are plain folders. */
    static final class ModelDirSource {
        static WeightSource of(ModelDir dir) {
            return WeightSource.of(dir.weights());
        }
    }
}
