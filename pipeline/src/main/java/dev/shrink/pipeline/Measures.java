package dev.shrink.pipeline;

import dev.shrink.eval.KlResult;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.SizeResult;
import dev.shrink.eval.SpeedEstimate;
import dev.shrink.eval.SpeedResult;
import java.util.List;

/**
 * Everything measured of one model ({@link Measurer}); cached as JSON under
 * {@code <work-dir>/results/<key>.json}.
 *
 * @param size          bytes on disk, bits per weight (against the baseline's parameters)
 * @param perplexity    one result per evaluation set, with its protocol (seqlen, windows, tokens)
 * @param kl            KL(baseline ‖ this) on held-out windows; null when the recipe asks for none
 * @param speed         prefill and decode tokens/s at batch 1
 * @param memory        the loaded model's heap; the process's peak RSS while loading and running it
 * @param continuations greedy continuations of the recipe's prompts
 * @param backend       the Ops backend that ran every measurement
 * @param seconds       wall time of the measurements
 * @param estimate      on the cuda backend with a known GPU: what {@code shrink estimate} predicts for the speed
 *                      measurement (measured / estimated in the report); null elsewhere
 */
public record Measures(SizeResult size, List<PplResult> perplexity, KlResult kl, SpeedResult speed, Memory memory,
                       List<Continuation> continuations, String backend, double seconds, SpeedEstimate estimate) {

    public Measures(SizeResult size, List<PplResult> perplexity, KlResult kl, SpeedResult speed, Memory memory,
                    List<Continuation> continuations, String backend, double seconds) {
        this(size, perplexity, kl, speed, memory, continuations, backend, seconds, null);
    }

    /**
     * Memory of a loaded model.
     *
     * @param modelHeapBytes the Java heap the loaded model holds: heap in use after a full GC with the
     *                       model loaded minus the same before loading it. Exact and repeatable; it is
     *                       the float32 weights (Shrink's CPU backends dequantize packed weights when
     *                       loading) plus the model's small objects
     * @param peakRssBytes   Linux VmHWM, reset (clear_refs) before loading: the whole process's peak
     *                       resident memory through loading and the batch-1 speed and generation runs,
     *                       JVM, earlier work's heap that the JVM keeps committed and mapped files
     *                       included; null where /proc is not available
     * @param startRssBytes  VmRSS just before loading (same caveats); null where not available
     * @param deviceBytes    on the cuda backend: the GPU memory of the resident model's weights (the
     *                       heap then holds no weights); null on the CPU
     */
    public record Memory(long modelHeapBytes, Long peakRssBytes, Long startRssBytes, Long deviceBytes) {
        public Memory(long modelHeapBytes, Long peakRssBytes, Long startRssBytes) {
            this(modelHeapBytes, peakRssBytes, startRssBytes, null);
        }
    }

    /** A prompt and the model's greedy continuation (the new text only). */
    public record Continuation(String prompt, String text, int newTokens) {
    }

    /** The perplexity of the set named {@code dataset}, or null. */
    public PplResult ppl(String dataset) {
        for (PplResult p : perplexity) {
            if (p.dataset().equals(dataset)) {
                return p;
            }
        }
        return null;
    }
}
