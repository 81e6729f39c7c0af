package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * GPTAQ's asymmetric calibration ({@link Gptq#quantize(float[], int, int, float[], float[], Gptq.Options, Ops)}):
 * with the float model's inputs equal to the quantized model's it is GPTQ, code for code; with inputs
 * that drifted it matches the float model's outputs better than GPTQ, which only sees the drifted inputs.
 */
class GptaqTest {
    private final Ops ops = Backends.select("cpu-reference", 1);

    /** X [M, K]: correlated inputs with a few large channels, as activations have. */
    private static float[] inputs(int M, int K, Random rnd) {
        float[] X = new float[M * K];
        float[] scale = new float[K];
        for (int k = 0; k < K; k++) {
            scale[k] = k % 17 == 0 ? 4f : 0.5f + rnd.nextFloat();
        }
        for (int m = 0; m < M; m++) {
            float common = (float) rnd.nextGaussian();
            for (int k = 0; k < K; k++) {
                X[m * K + k] = scale[k] * ((float) rnd.nextGaussian() + 0.5f * common);
            }
        }
        return X;
    }

    private static float[] weights(int N, int K, Random rnd) {
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            W[i] = (float) rnd.nextGaussian() * 0.1f;
        }
        return W;
    }

    /** (2/M)·Aᵀ·B for A, B [M, K]: H (A = B = X) or dXXT (A = X_fp − X, B = X), normalised alike. */
    private float[] gram(float[] A, float[] B, int M, int K) {
        float[] G = new float[K * K];
        ops.gemm(true, false, K, K, M, 2f / M, A, 0, K, B, 0, K, 0f, G, 0, K);
        return G;
    }

    @ParameterizedTest
    @CsvSource({"4, 32, true, false", "3, 32, false, false", "4, 32, true, true", "3, -1, false, true"})
    void equalInputsGiveGptqsCodes(int bits, int group, boolean sym, boolean actOrder) {
        Random rnd = new Random(bits * 31 + group);
        int N = 24, K = 96, M = 400;
        float[] W = weights(N, K, rnd);
        float[] X = inputs(M, K, rnd);
        float[] H = gram(X, X, M, K);
        Gptq.Options o = new Gptq.Options(QuantScheme.of(bits, group, sym), 32, 0.01, actOrder, actOrder);
        GptqResult gptq = Gptq.quantize(W, N, K, H, o, ops);
        float[] zero = gram(new float[M * K], X, M, K); // X_fp − X = 0
        GptqResult gptaq = Gptq.quantize(W, N, K, H, zero, o, ops);
        assertArrayEquals(gptq.codes(), gptaq.codes());
        assertArrayEquals(gptq.scales(), gptaq.scales());
        assertArrayEquals(gptq.zeros(), gptaq.zeros());
        assertArrayEquals(gptq.gIdx(), gptaq.gIdx());
        assertArrayEquals(gptq.Q(), gptaq.Q());
    }

    @ParameterizedTest
    @CsvSource({"4, 32, true", "3, 32, false", "4, -1, false"})
    void driftedInputsMatchTheFloatOutputsBetter(int bits, int group, boolean sym) {
        Random rnd = new Random(7 + bits + group);
        int N = 32, K = 96, M = 1000;
        float[] W = weights(N, K, rnd);
        float[] Xfp = inputs(M, K, rnd);
        // the quantized model's inputs: the float ones with a systematic drift and noise (earlier layers' error)
        float[] Xq = new float[M * K];
        for (int m = 0; m < M; m++) {
            for (int k = 0; k < K; k++) {
                float x = Xfp[m * K + k];
                Xq[m * K + k] = x * (k % 3 == 0 ? 0.85f : 1.05f) + 0.15f * (float) rnd.nextGaussian();
            }
        }
        float[] dX = new float[M * K];
        for (int i = 0; i < dX.length; i++) {
            dX[i] = Xfp[i] - Xq[i];
        }
        float[] H = gram(Xq, Xq, M, K);
        Gptq.Options o = new Gptq.Options(QuantScheme.of(bits, group, sym), 32, 0.01, false, false);
        GptqResult gptq = Gptq.quantize(W, N, K, H, o, ops);
        GptqResult gptaq = Gptq.quantize(W, N, K, H, gram(dX, Xq, M, K), o, ops);
        assertFalse(Arrays.equals(gptq.codes(), gptaq.codes()), "the asymmetry term changed nothing");
        double eGptq = outputError(gptq.Q(), W, Xq, Xfp, N, K, M);
        double eGptaq = outputError(gptaq.Q(), W, Xq, Xfp, N, K, M);
        assertTrue(eGptaq < eGptq, "GPTAQ ||Q·X_q − W·X_fp||² " + eGptaq + " not below GPTQ's " + eGptq);
    }

    /**
     * The block loop feeds GPTAQ the float model's inputs: block 0's q/k/v see the same inputs in both
     * models (the embeddings), so their codes are GPTQ's; after the first quantized linear the inputs
     * drift and the codes differ.
     */
    @org.junit.jupiter.api.Test
    void theStageGivesFloatInputsThatStartEqual() {
        java.nio.file.Path model = GptqTestSupport.shared().resolve("models/stories260K-hf");
        org.junit.jupiter.api.Assumptions.assumeTrue(java.nio.file.Files.isDirectory(model), "missing " + model);
        Random rnd = new Random(3);
        int[][] windows = new int[6][64];
        for (int[] w : windows) {
            for (int t = 0; t < w.length; t++) {
                w[t] = 3 + rnd.nextInt(500);
            }
        }
        GptqStage.Config plain = new GptqStage.Config("gptq", QuantScheme.of(4, 32, true), false, false, true, 0.01, 128, 8);
        try (dev.shrink.core.model.ModelDir dir = dev.shrink.core.model.ModelDir.open(model)) {
            var src = dev.shrink.core.forward.WeightSource.of(dir.weights());
            GptqStage.Result a = GptqStage.run(dir, src, windows, plain, ops, true);
            GptqStage.Result b = GptqStage.run(dir, src, windows, plain.withMethods(false, true), ops, true);
            for (String lin : new String[] {"q_proj", "k_proj", "v_proj"}) {
                String name = "model.layers.0.self_attn." + lin;
                assertArrayEquals(a.quantized().get(name).codes(), b.quantized().get(name).codes(), name);
            }
            String later = "model.layers.1.self_attn.q_proj";
            assertFalse(Arrays.equals(a.quantized().get(later).codes(), b.quantized().get(later).codes()), later);
        }
    }

    /** Σ over tokens and outputs of (Q·x_q − W·x_fp)², the objective of asymmetric calibration. */
    private double outputError(float[] Q, float[] W, float[] Xq, float[] Xfp, int N, int K, int M) {
        double e = 0;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double a = 0, b = 0;
                for (int k = 0; k < K; k++) {
                    a += (double) Q[n * K + k] * Xq[m * K + k];
                    b += (double) W[n * K + k] * Xfp[m * K + k];
                }
                e += (a - b) * (a - b);
            }
        }
        return e;
    }
}
