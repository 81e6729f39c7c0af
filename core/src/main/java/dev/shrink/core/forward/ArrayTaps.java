package dev.shrink.core.forward;

/**
 * Observation points of the {@link Forward} over arrays of type {@code A} (host float[] or a
 * backend's device arrays), for the stages: GPTQ's Hessians, AWQ's activation statistics, Wanda's
 * norms, distillation's hidden states. Arrays are only valid during the call: copy what you keep.
 * Row count M = tokens in the call (sequences × T). {@link Taps} is the host form.
 */
public interface ArrayTaps<A> {

    /** Taps that observe nothing. */
    @SuppressWarnings("unchecked")
    static <A> ArrayTaps<A> none() {
        return (ArrayTaps<A>) Taps.NONE;
    }

    /** The residual stream entering block {@code layer}: x: [M, C]. */
    default void blockInput(int layer, A x, int M, int C) {
    }

    /** The input of linear {@code linear} (spec name) in block {@code layer}: x: [M, K]. q/k/v share one array, as do gate/up. */
    default void linearInput(int layer, String linear, A x, int M, int K) {
    }

    /** The residual stream leaving block {@code layer}: x: [M, C]. */
    default void blockOutput(int layer, A x, int M, int C) {
    }
}
