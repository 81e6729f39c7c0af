package dev.shrink.prune;

import dev.shrink.core.ShrinkException;
import java.util.Locale;

/**
 * Where unstructured pruning compares scores: within one linear's whole matrix ({@code LAYER}: one
 * threshold per layer), within each output row ({@code ROW}: Wanda's comparison group), or across
 * every targeted linear of the model ({@code GLOBAL}: one threshold for all). N:M patterns compare
 * within their groups and have no scope.
 */
public enum Scope {
    LAYER, ROW, GLOBAL;

    /** "layer", "row" or "global", as the CLI and config.json write it. */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The scope named {@code text}; a {@link ShrinkException} listing the three otherwise. */
    public static Scope parse(String text) {
        for (Scope s : values()) {
            if (s.label().equals(text)) {
                return s;
            }
        }
        throw new ShrinkException("scope must be layer, row or global, got '" + text + "'");
    }
}
