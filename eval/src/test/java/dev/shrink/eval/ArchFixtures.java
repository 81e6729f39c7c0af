package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.safetensors.SafetensorsFile;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Map;

/**
 * The families' fixtures that transformers made (resources arch/FAMILY/: config.json, model.safetensors,
 * reference.safetensors with its input ids and logits; scripts/fixtures/make_arch_fixtures.py), for the
 * tests of this module and of the stages (through the test jar).
 */
public final class ArchFixtures {
    private ArchFixtures() {
    }

    /** The fixture folder of {@code family} ("phi3", "qwen3", ...). */
    public static Path path(String family) {
        java.net.URL url = ArchFixtures.class.getResource("/arch/" + family + "/config.json");
        if (url == null) {
            throw new AssertionError("no test resource arch/" + family + " (scripts/fixtures/make_arch_fixtures.py)");
        }
        try {
            java.net.URI uri = url.toURI();
            if (!uri.getScheme().equals("jar")) {
                return Path.of(uri).getParent();
            }
            // from a test jar (the GPU machine, or another module's tests): copied out, since safetensors files are memory-mapped
            Path out = java.nio.file.Files.createTempDirectory("arch-" + family);
            out.toFile().deleteOnExit();
            try (java.nio.file.FileSystem fs = java.nio.file.FileSystems.newFileSystem(uri, Map.of())) {
                try (var files = java.nio.file.Files.list(fs.getPath("/arch/" + family))) {
                    for (Path f : files.toList()) {
                        Path to = out.resolve(f.getFileName().toString());
                        java.nio.file.Files.copy(f, to);
                        to.toFile().deleteOnExit();
                    }
                }
            }
            return out;
        } catch (URISyntaxException | java.io.IOException e) {
            throw new AssertionError("arch/" + family + ": " + e, e);
        }
    }

    /** The largest |v| of {@code a} (0 for an empty array): the scale of a logits comparison. */
    public static float maxAbs(float[] a) {
        float m = 0;
        for (float v : a) {
            m = Math.max(m, Math.abs(v));
        }
        return m;
    }

    /** n calibration windows of T token ids drawn uniformly from [from, to) with {@code seed}. */
    public static int[][] randomWindows(int n, int T, int from, int to, long seed) {
        java.util.Random rnd = new java.util.Random(seed);
        int[][] w = new int[n][T];
        for (int[] row : w) {
            for (int t = 0; t < T; t++) {
                row[t] = from + rnd.nextInt(to - from);
            }
        }
        return w;
    }

    /**
     * The logits [B·T, V] of the model {@code dir} with the weights {@code src} (the folder's own through
     * {@link WeightSources#forModel}, or an overlay) on the fixture {@code fixture}'s reference input ids.
     */
    public static float[] logits(Path fixture, ModelDir dir, WeightSource src, Ops ops) {
        try (SafetensorsFile ref = SafetensorsFile.open(fixture.resolve("reference.safetensors"))) {
            long[] shape = ref.info("input_ids").orElseThrow().shape();
            int B = (int) shape[0], T = (int) shape[1];
            CausalLM lm = CausalLM.load(src, dir.config(), dir.spec(), ops);
            return lm.logits(lm.hidden(ref.readInts("input_ids"), B, T, null, Taps.NONE), 0, B * T);
        }
    }

    /** The mean negative log-likelihood of each next reference token under {@code logits} ({@link #logits}). */
    public static double meanNll(Path fixture, float[] logits, int V) {
        try (SafetensorsFile ref = SafetensorsFile.open(fixture.resolve("reference.safetensors"))) {
            long[] shape = ref.info("input_ids").orElseThrow().shape();
            int B = (int) shape[0], T = (int) shape[1];
            int[] ids = ref.readInts("input_ids");
            double sum = 0;
            int count = 0;
            for (int row = 0; row < B * T; row++) {
                if (row % T == T - 1) {
                    continue;
                }
                double max = Double.NEGATIVE_INFINITY, z = 0;
                for (int v = 0; v < V; v++) {
                    max = Math.max(max, logits[row * V + v]);
                }
                for (int v = 0; v < V; v++) {
                    z += Math.exp(logits[row * V + v] - max);
                }
                sum += max + Math.log(z) - logits[row * V + ids[row + 1]];
                count++;
            }
            return sum / count;
        }
    }

    /** {@code base} with the tensors of {@code replaced} (name → float values, same shape) in place of its own. */
    public static WeightSource overlay(WeightSource base, Map<String, float[]> replaced) {
        return new WeightSource() {
            @Override
            public boolean has(String name) {
                return replaced.containsKey(name) || base.has(name);
            }

            @Override
            public float[] floats(String name) {
                float[] v = replaced.get(name);
                return v != null ? v : base.floats(name);
            }

            @Override
            public long[] shape(String name) {
                return base.shape(name);
            }
        };
    }
}
