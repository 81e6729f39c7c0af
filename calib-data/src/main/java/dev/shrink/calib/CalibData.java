package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.safetensors.TokenWindows;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/** The calibration windows of a {@link CalibSpec}: the one entry point the compression commands use. */
public final class CalibData {
    private CalibData() {
    }

    /**
     * The {@code spec.samples()} × {@code spec.seqlen()} calibration windows.
     *
     * <p>With a tokens file: its windows, checked against the spec: fewer windows or shorter ones
     * than asked are an error; longer windows are cut to {@code seqlen}, extra windows dropped (the
     * first {@code samples} kept). Otherwise the dataset is loaded ({@link CalibSource}) and sampled:
     * {@code "random"} as {@link CalibWindows#randomWindows} over {@link CalibWindows#stream}
     * (with {@code bos}), {@code "blocks"} as {@link CalibWindows#blocks} (no BOS).
     *
     * @param tok the model's tokenizer (with a tokens file: only its vocabulary, which every id must be in)
     * @param bos the model's BOS id, or null when it has none
     * @throws ShrinkException for a missing or bad source or tokens file, or too little text
     */
    public static int[][] windows(CalibSpec spec, Tokenizer tok, Integer bos) {
        if (spec.tokensFile() != null) {
            return fromFile(spec.tokensFile(), spec.samples(), spec.seqlen(),
                    tok == null ? Integer.MAX_VALUE : tok.vocabSize());
        }
        List<String> docs = CalibSource.load(spec.dataset(), spec.field());
        return switch (spec.sampling()) {
            case "blocks" -> CalibWindows.blocks(docs, tok, spec.samples(), spec.seqlen());
            default -> CalibWindows.randomWindows(CalibWindows.stream(docs, tok, bos), spec.samples(),
                    spec.seqlen(), spec.seed());
        };
    }

    /**
     * Windows as drawn, with how: {@code sampling} is "file" (a tokens file), "random", "blocks", or
     * "random (too little text for blocks)"; {@code note} says why blocks fell back (null otherwise).
     */
    public record Drawn(int[][] windows, String sampling, String note) {
    }

    /**
     * {@link #windows}, except that {@code "blocks"} sampling (AWQ's) falls back to random windows of
     * the joined text when the text holds too few blocks, as LMDeploy does, saying so in the note.
     */
    public static Drawn draw(CalibSpec spec, Tokenizer tok, Integer bos) {
        if (spec.tokensFile() != null || !spec.sampling().equals("blocks")) {
            return new Drawn(windows(spec, tok, bos), spec.tokensFile() != null ? "file" : spec.sampling(), null);
        }
        List<String> docs = CalibSource.load(spec.dataset(), spec.field());
        try {
            return new Drawn(CalibWindows.blocks(docs, tok, spec.samples(), spec.seqlen()), "blocks", null);
        } catch (ShrinkException tooShort) {
            String note = tooShort.getMessage().replace('\n', ' ').replace('\r', ' ') + "; using " + spec.samples()
                    + " random windows of the joined text instead (seed " + spec.seed() + ")";
            return new Drawn(CalibWindows.randomWindows(CalibWindows.stream(docs, tok, bos), spec.samples(),
                    spec.seqlen(), spec.seed()), "random (too little text for blocks)", note);
        }
    }

    static int[][] fromFile(Path file, int samples, int seqlen, int vocab) {
        int[][] all = TokenWindows.read(file, vocab);
        int have = all[0].length;
        if (all.length < samples || have < seqlen) {
            throw ShrinkException.at(file, "holds " + all.length + " windows of " + have
                    + " tokens; asked for " + samples + " windows of " + seqlen);
        }
        int[][] out = new int[samples][];
        for (int i = 0; i < samples; i++) {
            out[i] = have == seqlen ? all[i] : Arrays.copyOf(all[i], seqlen);
        }
        return out;
    }
}
