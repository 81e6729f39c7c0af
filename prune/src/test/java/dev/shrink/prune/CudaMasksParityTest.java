package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.kernels.cuda.Cuda;
import dev.shrink.kernels.cuda.CudaMasks;
import dev.shrink.kernels.cuda.CudaOps;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Pruning masks on the GPU ({@link CudaMasks}, masks.cu; {@link DeviceMasks}) against {@link Masks}
 * and {@link Wanda}, the reference, on fresh random scores with many ties (scores drawn from a few
 * values, so that the tie rule decides much of every mask: the earlier index is kept): per row, per
 * N:M group and per matrix, k from 0 to all; magnitude and Wanda scores made on the device; and the
 * magnitude stage on fixture-llama-14m on the cuda backend against the CPU's: identical masks.
 * Skipped with the reason where there is no GPU (CI).
 */
class CudaMasksParityTest {
    private static CudaOps cuda;
    private static String skipReason;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            System.out.println("CudaMasksParityTest skipped: " + skipReason);
            return;
        }
        cuda = CudaOps.open(0);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(cuda != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            cuda.close();
        }
    }

    /** Scores ≥ 0 from {@code levels} values (ties everywhere), −0 among them, or continuous when levels is 0. */
    private static float[] scores(int n, int levels, Random rnd) {
        float[] s = new float[n];
        for (int i = 0; i < n; i++) {
            s[i] = levels == 0 ? (float) Math.abs(rnd.nextGaussian()) : rnd.nextInt(levels) * 0.25f;
            if (s[i] == 0f && rnd.nextBoolean()) {
                s[i] = -0f;
            }
        }
        return s;
    }

    @ParameterizedTest(name = "N={0} K={1} levels={2}")
    @CsvSource({"37, 96, 3", "16, 1000, 7", "8, 4099, 0", "5, 33, 1"})
    void rowAndMatrixSelectionsMatch(int N, int K, int levels) {
        Random rnd = new Random(N * 31L + K + levels);
        float[] S = scores(N * K, levels, rnd);
        try (CudaMasks m = new CudaMasks(cuda.device())) {
            for (int k : new int[] {0, 1, K / 3, K / 2, K - 1, K}) {
                assertArrayEquals(Masks.lowestPerRow(S, N, K, k), m.mask(S, N, K, CudaMasks.Kind.ROW, k, 0), "row k=" + k);
            }
            long n = (long) N * K;
            for (long k : new long[] {0, 1, n / 7, n / 2, n - 1, n}) {
                assertArrayEquals(Masks.lowestInMatrix(S, k), m.mask(S, N, K, CudaMasks.Kind.MATRIX, k, 0), "matrix k=" + k);
            }
        }
    }

    @ParameterizedTest(name = "{1}:{0} levels={2}")
    @CsvSource({"4, 2, 3", "4, 1, 2", "8, 4, 5", "4, 4, 2", "16, 0, 3", "32, 7, 0"})
    void groupSelectionsMatch(int m, int keep, int levels) {
        int N = 24, K = 64 * m / 4 * 4;
        Random rnd = new Random(m * 131L + keep + levels);
        float[] S = scores(N * K, levels, rnd);
        try (CudaMasks c = new CudaMasks(cuda.device())) {
            int prune = m - keep;
            assertArrayEquals(Masks.lowestPerGroup(S, N, K, m, prune), c.mask(S, N, K, CudaMasks.Kind.GROUP, prune, m),
                    keep + ":" + m);
        }
    }

    @Test
    void magnitudeAndWandaScoresOnTheDeviceGiveTheSameMasks() {
        int N = 48, K = 256;
        Random rnd = new Random(5);
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            W[i] = rnd.nextInt(9) == 0 ? (rnd.nextBoolean() ? 0f : -0f) : (float) rnd.nextGaussian() * 0.02f;
        }
        for (int i = 0; i < W.length; i += 5) {
            W[i] = -W[i + 1]; // equal magnitudes
        }
        double[] sumSq = new double[K];
        for (int j = 0; j < K; j++) {
            sumSq[j] = j % 11 == 0 ? 0 : Math.abs(rnd.nextGaussian()) * 100;
        }
        try (DeviceMasks d = new DeviceMasks(cuda)) {
            for (SparsityPattern p : List.of(new SparsityPattern.NofM(2, 4), new SparsityPattern.Unstructured(0.5),
                    new SparsityPattern.Unstructured(0.3))) {
                for (Scope scope : p instanceof SparsityPattern.NofM ? new Scope[] {null} : new Scope[] {Scope.ROW, Scope.LAYER}) {
                    assertArrayEquals(Masks.mask(Masks.magnitude(W), N, K, p, scope), d.mask(W, N, K, null, p, scope),
                            "magnitude " + p + " " + scope);
                    assertArrayEquals(Wanda.mask(W, N, K, sumSq, p, scope), d.mask(W, N, K, sumSq, p, scope),
                            "wanda " + p + " " + scope);
                }
            }
        }
    }

    /** The stage on the cuda backend prunes exactly the CPU's weights (magnitude: the same scores on both). */
    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"2:4, ''", "0.5, layer", "0.5, row"})
    void magnitudeStageOnCudaMatchesCpu(String pattern, String scope) {
        SparsityPattern p = pattern.contains(":") ? new SparsityPattern.NofM(Integer.parseInt(pattern.split(":")[0]),
                Integer.parseInt(pattern.split(":")[1])) : new SparsityPattern.Unstructured(Double.parseDouble(pattern));
        PruneStage.Config cfg = new PruneStage.Config("magnitude", p, scope.isEmpty() ? null : scope, List.of(), List.of(), 8);
        try (ModelDir model = ModelDir.open(PruneTestSupport.fixture())) {
            PruneStage.Result cpu = PruneStage.run(model, WeightSource.of(model.weights()), null, cfg, Backends.select("cpu", 0), true);
            PruneStage.Result gpu = PruneStage.run(model, WeightSource.of(model.weights()), null, cfg, cuda, true);
            assertEquals(cpu.weights().keySet(), gpu.weights().keySet());
            for (Map.Entry<String, float[]> e : cpu.weights().entrySet()) {
                assertArrayEquals(e.getValue(), gpu.weights().get(e.getKey()), 0f, e.getKey());
            }
            assertEquals(cpu.totals().linearZeros(), gpu.totals().linearZeros());
        }
    }
}
