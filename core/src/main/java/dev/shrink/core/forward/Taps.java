package dev.shrink.core.forward;

/**
 * Observation points of the host forward ({@link ArrayTaps} over float[]), for the stages: GPTQ's
 * Hessians, AWQ's activation statistics, Wanda's norms, distillation's hidden states. Arrays are
 * only valid during the call: copy what you keep. Row count M = tokens in the call (sequences × T).
 */
public interface Taps extends ArrayTaps<float[]> {
    Taps NONE = new Taps() { };
}
