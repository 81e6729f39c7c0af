package dev.shrink.distill;

import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.calib.EvalText;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Tokenizes here (where the tokenizer's native library is) what the golden distillation run on the
 * GPU machine needs, as safetensors token files (calib-data's {@link TokenWindows} format, one row
 * each): {@code train.safetensors}, the default training text ({@value #DATA}) as {@code shrink
 * distill} streams it (BOS once); and {@code heldout.safetensors}, {@code wikitext2.safetensors},
 * the first {@code windows × seqlen} tokens of each evaluation text with BOS prepended, as the
 * CLI's evaluator gives them to Perplexity.
 *
 * <pre>DistillTokens MODEL_DIR OUT_DIR [WINDOWS=200] [SEQLEN=512]</pre>
 */
public final class DistillTokens {
    static final String DATA = "c4,wikitext2-valid,ptb-valid";

    private DistillTokens() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: DistillTokens MODEL_DIR OUT_DIR [WINDOWS=200] [SEQLEN=512]");
            System.exit(2);
        }
        int windows = args.length > 2 ? Integer.parseInt(args[2]) : 200;
        int seqlen = args.length > 3 ? Integer.parseInt(args[3]) : 512;
        Path out = Path.of(args[1]);
        Files.createDirectories(out);
        try (ModelDir dir = ModelDir.open(Path.of(args[0])); Tokenizer tok = dir.tokenizer()) {
            Integer bos = dir.config().bosTokenId();
            int[] stream = TrainText.stream(TrainText.documents(DATA, null, false), tok, bos);
            TokenWindows.write(out.resolve("train.safetensors"), new int[][] {stream});
            System.out.println("train: " + stream.length + " tokens of " + DATA + ", sha256 " + TrainText.fingerprint(stream));
            for (String d : new String[] {"heldout", "wikitext2"}) {
                int[] body = tok.encode(EvalText.load(d).text());
                int[] ids = body;
                if (bos != null) {
                    ids = new int[body.length + 1];
                    ids[0] = bos;
                    System.arraycopy(body, 0, ids, 1, body.length);
                }
                int n = Math.min(ids.length, windows * seqlen);
                TokenWindows.write(out.resolve(d + ".safetensors"), new int[][] {Arrays.copyOf(ids, n)});
                System.out.println(d + ": " + n + " of " + ids.length + " tokens");
            }
        }
    }
}
