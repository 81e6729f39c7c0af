package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.model.ModelConfig;

/**
 * What perplexity needs of a model: the negative log-likelihood of each next token in B windows of
 * T tokens, each window an independent forward from position 0. Two forms run the one forward:
 * {@link #host} (a {@link CausalLM} on the Java heap) and {@link ResidentModel} (resident on the GPU,
 * logits and NLL reduced there).
 */
public interface WindowScorer {

    ModelConfig config();

    /** The backend as reports name it. */
    String backend();

    /** Windows are run together up to about this many rows (tokens) per forward. */
    int batchRows();

    /**
     * nll[b·T + t] = −log p(tokens[b·T + t + 1] | tokens[b·T .. b·T + t]) for t &lt; T − 1; the last
     * position of each window predicts nothing (its entry is ignored).
     */
    double[] nll(int[] tokens, int B, int T);

    /** The error for windows whose NLL was not finite, naming the first op that produced a NaN or Inf. */
    ShrinkException nonFinite(int[] tokens, int B, int T, String what);

    /** The host form: hidden states, then logits in chunks of at most 16 M floats, then cross-entropy. */
    static WindowScorer host(CausalLM model) {
        return new WindowScorer() {
            @Override
            public ModelConfig config() {
                return model.config();
            }

            @Override
            public String backend() {
                return model.decoder().ops().name();
            }

            @Override
            public int batchRows() {
                return 2048;
            }

            @Override
            public double[] nll(int[] tokens, int B, int T) {
                int V = model.config().vocab(), rows = B * T;
                int chunk = Math.max(1, Math.min((16 << 20) / V, rows));
                float[] hidden = model.hidden(tokens, B, T, null, Taps.NONE); // [B·T, C]
                double[] out = new double[rows];
                double[] nll = new double[chunk];
                for (int r0 = 0; r0 < rows; r0 += chunk) {
                    int n = Math.min(chunk, rows - r0);
                    float[] logits = model.logits(hidden, r0, n); // [n, V]
                    int[] targets = new int[n];
                    for (int i = 0; i < n; i++) {
                        int r = r0 + i;
                        targets[i] = r % T == T - 1 ? 0 : tokens[r + 1]; // a valid id where nothing is predicted
                    }
                    model.decoder().ops().crossEntropy(logits, n, V, targets, nll);
                    System.arraycopy(nll, 0, out, r0, n);
                }
                return out;
            }

            @Override
            public ShrinkException nonFinite(int[] tokens, int B, int T, String what) {
                return model.nonFinite(tokens, B, T, what);
            }
        };
    }
}
