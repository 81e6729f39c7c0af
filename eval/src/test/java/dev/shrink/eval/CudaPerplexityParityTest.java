package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * End-to-end parity of the CUDA backend: fixture-llama-14m's heldout perplexity on its first 8
 * windows of 512 tokens, computed with {@code --device cuda} and with {@code --device cpu}, must
 * agree to 1e-4 relative, and both must match PyTorch's figure ({@code ppl_first8.heldout} of the
 * golden file) to 1e-4 relative.
 *
 * <p>The token ids come from the model's tokenizer on the heldout text (the protocol of
 * shared/golden/README.md), or, where the tokenizer's native library is not carried (the GPU
 * machine), from the token-window file named by {@code -Dshrink.cuda.heldoutTokens}, which
 * {@link HeldoutTokenWindows} writes. Skipped with the reason where there is no GPU.
 */
class CudaPerplexityParityTest {
    private static final int WINDOWS = 8;
    private static final int SEQLEN = 512;

    @Test
    void fixtureHeldoutPerplexityOnCudaEqualsCpu() {
        OpsProvider cudaProvider = Backends.providers().stream().filter(p -> p.device().equals("cuda")).findFirst()
                .orElseThrow(() -> new AssertionError("the cuda backend is not registered"));
        assumeTrue(cudaProvider.available(), () -> "no CUDA device: " + cudaProvider.unavailableReason());
        Path model = Golden.model("fixture-llama-14m");
        int[] ids = heldoutIds(model);
        double golden = Golden.numbers("fixture-llama-14m").at("/ppl_first8/heldout").asDouble();

        PplResult cpu = perplexity(model, Backends.select("cpu", 0), ids);
        Ops cudaOps = Backends.select("cuda", 0);
        PplResult gpu;
        try {
            gpu = perplexity(model, cudaOps, ids);
        } finally {
            close(cudaOps);
        }
        System.out.printf("fixture-llama-14m heldout, %d windows of %d: cpu %.6f (%.1f tok/s), %s %.6f (%.1f tok/s),"
                        + " golden %.6f, cuda vs cpu rel. %.2e%n", WINDOWS, SEQLEN, cpu.ppl(), cpu.tokensPerSecond(),
                gpu.backend(), gpu.ppl(), gpu.tokensPerSecond(), golden, Golden.relErr(gpu.ppl(), cpu.ppl()));
        assertTrue(gpu.backend().startsWith("cuda ("), gpu.backend());
        assertEquals(WINDOWS * (SEQLEN - 1), gpu.predictions());
        assertTrue(Golden.relErr(gpu.ppl(), cpu.ppl()) < 1e-4, () -> "cuda " + gpu.ppl() + " vs cpu " + cpu.ppl());
        assertTrue(Golden.relErr(gpu.ppl(), golden) < 1e-4, () -> "cuda " + gpu.ppl() + " vs golden " + golden);
        assertTrue(Golden.relErr(cpu.ppl(), golden) < 1e-4, () -> "cpu " + cpu.ppl() + " vs golden " + golden);
    }

    private static PplResult perplexity(Path model, Ops ops, int[] ids) {
        try (ModelDir dir = ModelDir.open(model)) {
            CausalLM lm = CausalLM.load(WeightSources.forModel(dir), dir.config(), dir.spec(), ops);
            return Perplexity.evaluate(lm, "heldout", ids, SEQLEN, WINDOWS, true);
        }
    }

    /** The first WINDOWS·SEQLEN ids of the heldout stream (BOS first). */
    private static int[] heldoutIds(Path model) {
        String file = System.getProperty("shrink.cuda.heldoutTokens");
        if (file != null && !file.isBlank()) {
            int[][] w = TokenWindows.read(Path.of(file));
            assertEquals(WINDOWS, w.length, file + ": windows");
            int[] ids = new int[WINDOWS * SEQLEN];
            for (int i = 0; i < WINDOWS; i++) {
                assertEquals(SEQLEN, w[i].length, file + ": seqlen");
                System.arraycopy(w[i], 0, ids, i * SEQLEN, SEQLEN);
            }
            return ids;
        }
        try (LoadedModel m = LoadedModel.open(model, Backends.select("cpu-reference", 1))) {
            int[] all = m.tokenStream(EvalText.load("heldout").text());
            return java.util.Arrays.copyOf(all, WINDOWS * SEQLEN);
        }
    }

    private static void close(Ops ops) {
        if (ops instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }
}
