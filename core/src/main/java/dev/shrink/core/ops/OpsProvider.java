package dev.shrink.core.ops;

/**
 * A backend, found through {@link java.util.ServiceLoader}. The highest-ranked available
 * provider wins unless a device is named ("cpu", "cpu-reference", "cuda").
 */
public interface OpsProvider {
    /** Device name users type after --device, e.g. "cpu". */
    String device();

    /** Higher wins under --device auto. */
    int rank();

    /** Whether the backend can run here (a GPU and its libraries are present, ...). */
    boolean available();

    /** Why not, when {@link #available()} is false. */
    default String unavailableReason() {
        return "";
    }

    /** What runs here when {@link #available()} (a GPU's name, the CPU's cores), for {@code shrink --version}; may be "". */
    default String describe() {
        return "";
    }

    Ops create(int threads);
}
