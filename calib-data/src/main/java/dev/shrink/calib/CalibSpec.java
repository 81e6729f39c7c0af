package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.TokenWindows;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * What calibration data a compression run uses, as the CLI options give it.
 *
 * @param dataset    a {@link CalibSource} preset or path; may be null when {@code tokensFile} is set
 * @param field      the JSON field or column of path sources; null means {@value CalibSource#DEFAULT_FIELD}
 * @param samples    the number of windows, at least 1
 * @param seqlen     tokens per window, at least 1
 * @param seed       the Python {@code random.seed} of {@code "random"} sampling
 * @param tokensFile a {@link TokenWindows} file; when set it wins over {@code dataset}
 * @param sampling   {@code "random"} (GPTQ: random windows of the joined stream, the default when
 *                   null) or {@code "blocks"} (AWQ: consecutive blocks of per-document tokens)
 */
public record CalibSpec(String dataset, String field, int samples, int seqlen, long seed, Path tokensFile,
                        String sampling) {

    /** The most calibration tokens (samples × seqlen) a run holds: one Java array's worth. */
    public static final long MAX_TOKENS = Integer.MAX_VALUE - 8;

    /** The sampling methods. */
    public static final List<String> SAMPLINGS = List.of("random", "blocks");

    /**
     * Normalizes {@code field} and {@code sampling} (defaults, lower case) and checks the rest.
     *
     * @throws ShrinkException if samples or seqlen is not positive, their product is over
     *                         {@link #MAX_TOKENS}, the sampling is unknown, or neither a dataset nor a
     *                         tokens file is given
     */
    public CalibSpec {
        if (samples < 1) {
            throw new ShrinkException("the number of calibration samples must be positive, not " + samples);
        }
        if (seqlen < 1) {
            throw new ShrinkException("the calibration sequence length must be positive, not " + seqlen);
        }
        if ((long) samples * seqlen > MAX_TOKENS) {
            throw new ShrinkException(String.format(java.util.Locale.ROOT, "%,d calibration samples of %,d tokens are"
                    + " %,d tokens, more than Shrink holds at once (%,d); use fewer samples or shorter ones",
                    samples, seqlen, (long) samples * seqlen, MAX_TOKENS));
        }
        field = field == null || field.isBlank() ? CalibSource.DEFAULT_FIELD : field;
        sampling = sampling == null || sampling.isBlank() ? "random" : sampling.toLowerCase(Locale.ROOT);
        if (!SAMPLINGS.contains(sampling)) {
            throw new ShrinkException("unknown calibration sampling '" + sampling + "' (one of: "
                    + String.join(", ", SAMPLINGS) + ")");
        }
        if (tokensFile == null && (dataset == null || dataset.isBlank())) {
            throw new ShrinkException("no calibration data: give a dataset (a preset: "
                    + String.join(", ", CalibSource.PRESETS) + "; or a file) or a token-window file");
        }
    }

    /** GPTQ's setting: {@code "random"} windows of {@code dataset}, the default field, no tokens file. */
    public static CalibSpec random(String dataset, int samples, int seqlen, long seed) {
        return new CalibSpec(dataset, null, samples, seqlen, seed, null, "random");
    }
}
