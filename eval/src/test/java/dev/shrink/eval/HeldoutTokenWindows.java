package dev.shrink.eval;

import dev.shrink.calib.EvalText;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.ops.Backends;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Writes the first N windows of the heldout token stream of a model (its tokenizer, BOS once,
 * windows of SEQLEN, as the perplexity protocol cuts them) as a token-window file, for
 * {@link CudaPerplexityParityTest} on a machine that does not carry the tokenizer's native library.
 *
 * <pre>java -cp ... dev.shrink.eval.HeldoutTokenWindows MODEL_DIR OUT.safetensors [N=8] [SEQLEN=512]</pre>
 */
public final class HeldoutTokenWindows {
    private HeldoutTokenWindows() {
    }

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: HeldoutTokenWindows MODEL_DIR OUT.safetensors [N=8] [SEQLEN=512]");
            System.exit(2);
        }
        int n = args.length > 2 ? Integer.parseInt(args[2]) : 8;
        int seqlen = args.length > 3 ? Integer.parseInt(args[3]) : 512;
        try (LoadedModel m = LoadedModel.open(Path.of(args[0]), Backends.select("cpu-reference", 1))) {
            int[] ids = m.tokenStream(EvalText.load("heldout").text());
            if (ids.length < n * seqlen) {
                throw new IllegalArgumentException("heldout has " + ids.length + " tokens, fewer than " + n + "x" + seqlen);
            }
            int[][] windows = new int[n][];
            for (int i = 0; i < n; i++) {
                windows[i] = Arrays.copyOfRange(ids, i * seqlen, (i + 1) * seqlen);
            }
            TokenWindows.write(Path.of(args[1]), windows);
            System.out.println("wrote " + args[1] + ": " + n + " windows of " + seqlen + " heldout tokens");
        }
    }
}
