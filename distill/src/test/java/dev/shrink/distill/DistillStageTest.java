package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.kernels.cpu.VectorOps;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The training loop on stories260K-hf (teacher) and its magnitude-2:4-pruned copy (student, pruned
 * here in plain Java): a resumed run equals an uninterrupted one bit for bit; the pruned zeros are
 * exactly zero after every step while the rest of the weights move and the KL falls; a non-finite
 * loss stops the run and keeps the last good checkpoint; checkpoints of other runs are refused.
 */
class DistillStageTest {
    static int[] stream;

    @BeforeAll
    static void text() {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            stream = streamFor(dir);
        }
    }

    /** The first 40 C4 sample documents in the model's tokens (~24k tokens for stories260K). */
    static int[] streamFor(ModelDir dir) {
        try (Tokenizer tok = dir.tokenizer()) {
            return TrainText.stream(TrainText.documents("c4", null, false).subList(0, 40), tok, dir.config().bosTokenId());
        }
    }

    static F32TrainOps ops() {
        return new F32TrainOps(new VectorOps(2), 2);
    }

    /** A small run: 6 steps of 2 × 32 tokens in micro-batches of 1 (accumulation), checkpoints every 2. */
    static DistillStage.Config config(double lr) {
        return new DistillStage.Config(6, 2, 1, 32, lr, 2, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null, AdamW.Hyper.TORCH, 0, 2);
    }

    static DistillStage.Teacher teacher(ModelDir dir) {
        return new DistillStage.Teacher(WeightSource.of(dir.weights()), dir.config(), dir.spec());
    }

    /** The student: every decoder linear pruned 2:4 by magnitude (in each group of 4 inputs the 2 largest |w| kept). */
    static DistillStage.Student pruned(ModelDir dir, F32TrainOps ops) {
        Weights<float[]> w = Weights.load(WeightSource.of(dir.weights()), dir.config(), dir.spec(), ops);
        Map<String, int[]> masks = new LinkedHashMap<>();
        for (int l = 0; l < dir.config().layers(); l++) {
            for (ArchitectureSpec.Linear lin : dir.spec().linears()) {
                String name = dir.spec().layer(l, lin.name()) + ".weight";
                float[] p = w.get(name);
                List<Integer> zeros = new ArrayList<>();
                for (int g = 0; g + 4 <= p.length; g += 4) {
                    Integer[] idx = {g, g + 1, g + 2, g + 3};
                    java.util.Arrays.sort(idx, (a, b) -> Float.compare(Math.abs(p[a]), Math.abs(p[b])));
                    zeros.add(idx[0]);
                    zeros.add(idx[1]);
                }
                int[] z = zeros.stream().mapToInt(Integer::intValue).sorted().toArray();
                for (int i : z) {
                    p[i] = 0f;
                }
                masks.put(name, z);
            }
        }
        return new DistillStage.Student(w, masks);
    }

    static Map<String, float[]> snapshot(Weights<float[]> w) {
        Map<String, float[]> m = new LinkedHashMap<>();
        for (Weights.Entry<float[]> e : w.entries()) {
            m.put(e.name(), e.value().clone());
        }
        return m;
    }

    @Test
    void resumedRunEqualsUninterruptedRun(@TempDir Path tmp) {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            DistillStage.Config cfg = config(1e-3);
            DistillStage.Result full = DistillStage.train(teacher(dir), pruned(dir, ops()), stream, cfg, ops(),
                    tmp.resolve("a"), false, null, DistillStage.Listener.NONE);

            // a run killed during step 3: its checkpoint holds step 2
            Path b = tmp.resolve("b");
            RuntimeException kill = new RuntimeException("killed");
            RuntimeException thrown = assertThrows(RuntimeException.class, () -> DistillStage.train(teacher(dir),
                    pruned(dir, ops()), stream, cfg, ops(), b, false, null, new DistillStage.Listener() {
                        @Override
                        public void step(DistillStage.StepRecord r, int total) {
                            if (r.step() == 3) {
                                throw kill;
                            }
                        }
                    }));
            assertTrue(thrown == kill);
            int[] resumedAt = {-1};
            DistillStage.Result resumed = DistillStage.train(teacher(dir), pruned(dir, ops()), stream, cfg, ops(), b, true,
                    null, new DistillStage.Listener() {
                        @Override
                        public void resumed(int step, Path file) {
                            resumedAt[0] = step;
                        }
                    });
            assertEquals(2, resumedAt[0]);
            assertEquals(2, resumed.resumedFrom());
            assertEquals(6, resumed.curve().size());
            for (int i = 0; i < 6; i++) {
                assertEquals(full.curve().get(i).loss(), resumed.curve().get(i).loss(), 0.0, "loss of step " + (i + 1));
                assertEquals(full.curve().get(i).gradNorm(), resumed.curve().get(i).gradNorm(), 0.0);
            }
            var a = full.weights().entries();
            var r = resumed.weights().entries();
            for (int i = 0; i < a.size(); i++) {
                assertArrayEquals(a.get(i).value(), r.get(i).value(), a.get(i).name() + " differs after resuming");
            }
        }
    }

    @Test
    void prunedZerosStayZeroWhileTheRestLearns(@TempDir Path tmp) {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            F32TrainOps ops = ops();
            DistillStage.Student s = pruned(dir, ops);
            Map<String, float[]> before = snapshot(s.weights());
            int[] checks = {0};
            DistillStage.Config cfg = new DistillStage.Config(12, 4, 4, 64, 2e-3, 2, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null,
                    AdamW.Hyper.TORCH, 1, 0);
            DistillStage.Result r = DistillStage.train(teacher(dir), s, stream, cfg, ops, null, false, null,
                    new DistillStage.Listener() {
                        @Override
                        public void step(DistillStage.StepRecord rec, int total) {
                            for (var e : s.masks().entrySet()) { // after every step, not only at the end
                                float[] p = s.weights().get(e.getKey());
                                for (int i : e.getValue()) {
                                    assertEquals(0, Float.floatToRawIntBits(p[i]), e.getKey() + "[" + i + "] after step " + rec.step());
                                }
                            }
                            checks[0]++;
                        }
                    });
            assertEquals(12, checks[0]);
            long moved = 0, kept = 0;
            for (var e : s.masks().entrySet()) {
                float[] p = s.weights().get(e.getKey()), p0 = before.get(e.getKey());
                boolean[] masked = new boolean[p.length];
                for (int i : e.getValue()) {
                    masked[i] = true;
                }
                for (int i = 0; i < p.length; i++) {
                    if (!masked[i]) {
                        kept++;
                        moved += p[i] != p0[i] ? 1 : 0;
                    }
                }
            }
            assertTrue(moved > 0.99 * kept, moved + " of " + kept + " unmasked weights moved");
            assertEquals(r.maskedZeros(), s.masks().values().stream().mapToLong(z -> z.length).sum());
            // the KL falls: the mean of the last 3 steps is well below the first step's
            double first = r.curve().get(0).kl();
            double last = (r.curve().get(9).kl() + r.curve().get(10).kl() + r.curve().get(11).kl()) / 3;
            assertTrue(last < 0.8 * first, "KL " + first + " → " + last);
        }
    }

    @Test
    void nonFiniteLossStopsAndKeepsTheLastGoodCheckpoint(@TempDir Path tmp) throws Exception {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            // the teacher's final-norm array, as its decoder holds it; poisoned after step 4, so that
            // step 5's teacher logits, and with them the loss, are NaN
            WeightSource src = WeightSource.of(dir.weights());
            float[][] norm = new float[1][];
            WeightSource held = new WeightSource() {
                @Override
                public boolean has(String name) {
                    return src.has(name);
                }

                @Override
                public float[] floats(String name) {
                    float[] f = src.floats(name);
                    if (name.equals("model.norm.weight")) {
                        norm[0] = f;
                    }
                    return f;
                }

                @Override
                public long[] shape(String name) {
                    return src.shape(name);
                }
            };
            Path ck = tmp.resolve("ck");
            DistillStage.Config cfg = new DistillStage.Config(8, 2, 2, 32, 1e-3, 0, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null,
                    AdamW.Hyper.TORCH, 0, 2);
            List<Integer> steps = new ArrayList<>();
            ShrinkException nan = assertThrows(ShrinkException.class, () -> DistillStage.train(
                    new DistillStage.Teacher(held, dir.config(), dir.spec()), pruned(dir, ops()), stream, cfg, ops(), ck,
                    false, null, new DistillStage.Listener() {
                        @Override
                        public void step(DistillStage.StepRecord r, int total) {
                            steps.add(r.step());
                            if (r.step() == 4) {
                                norm[0][3] = Float.NaN;
                            }
                        }
                    }));
            assertEquals(List.of(1, 2, 3, 4), steps);
            assertEquals("step 5: the loss is NaN; training stopped before this step's update; the last good checkpoint "
                    + "(step 4) is kept in " + DistillCheckpoint.file(ck) + ": continue with --resume (a lower --lr or a "
                    + "--clip may help)", nan.getMessage());
            Map<String, Integer> sizes = new LinkedHashMap<>();
            Weights<float[]> w = Weights.load(src, dir.config(), dir.spec(), ops());
            w.entries().forEach(en -> sizes.put(en.name(), en.value().length));
            DistillCheckpoint.Loaded l = DistillCheckpoint.read(ck, sizes);
            assertEquals(4, l.state().step());
            assertEquals(4, l.state().curve().size());
            for (float[] p : l.params().values()) {
                for (float f : p) {
                    assertTrue(Float.isFinite(f));
                }
            }
            try (var files = Files.list(ck)) {
                assertEquals(List.of(DistillCheckpoint.FILE), files.map(f -> f.getFileName().toString()).toList());
            }
        }
    }

    @Test
    void checkpointsOfOtherRunsAreRefused(@TempDir Path tmp) {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            Path ck = tmp.resolve("ck");
            DistillStage.Config cfg = new DistillStage.Config(2, 2, 2, 32, 1e-3, 0, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null,
                    AdamW.Hyper.TORCH, 0, 1);
            DistillStage.train(teacher(dir), pruned(dir, ops()), stream, cfg, ops(), ck, false, null, DistillStage.Listener.NONE);
            // the same folder again without --resume
            ShrinkException again = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(dir),
                    pruned(dir, ops()), stream, cfg, ops(), ck, false, null, DistillStage.Listener.NONE));
            assertEquals(ck + ": holds a checkpoint of an earlier run: pass --resume to continue it, or delete the folder "
                    + "to start over", again.getMessage());
            // another learning rate
            DistillStage.Config other = new DistillStage.Config(2, 2, 2, 32, 2e-3, 0, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null,
                    AdamW.Hyper.TORCH, 0, 1);
            ShrinkException lr = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(dir),
                    pruned(dir, ops()), stream, other, ops(), ck, true, null, DistillStage.Listener.NONE));
            assertEquals(DistillCheckpoint.file(ck) + ": was made by a run with lr = 0.001; this run has 0.002: resume "
                    + "with the same options and models, or delete the folder to start over", lr.getMessage());
            // another student (unpruned)
            DistillStage.Student dense = new DistillStage.Student(
                    Weights.load(WeightSource.of(dir.weights()), dir.config(), dir.spec(), ops()), Map.of());
            ShrinkException st = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(dir), dense, stream,
                    cfg, ops(), ck, true, null, DistillStage.Listener.NONE));
            assertTrue(st.getMessage().contains("student_sha256"), st.getMessage());
            // other data
            int[] shorter = java.util.Arrays.copyOf(stream, stream.length - 1);
            ShrinkException data = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(dir),
                    pruned(dir, ops()), shorter, cfg, ops(), ck, true, null, DistillStage.Listener.NONE));
            assertTrue(data.getMessage().contains("data_sha256"), data.getMessage());
            // resuming where there is none
            ShrinkException none = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(dir),
                    pruned(dir, ops()), stream, cfg, ops(), tmp.resolve("empty"), true, null, DistillStage.Listener.NONE));
            assertEquals(DistillCheckpoint.file(tmp.resolve("empty")) + ": no checkpoint to resume from", none.getMessage());
        }
    }

    @Test
    void teacherOfAnotherVocabularyIsRefused() {
        try (ModelDir stories = ModelDir.open(TestSupport.stories()); ModelDir fixture = ModelDir.open(TestSupport.fixture())) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> DistillStage.train(teacher(fixture),
                    pruned(stories, ops()), stream, config(1e-3), ops(), null, false, null, DistillStage.Listener.NONE));
            assertEquals("teacher and student vocabularies differ: 8192 and 512 tokens; distillation compares their "
                    + "distributions token by token", e.getMessage());
        }
    }
}
