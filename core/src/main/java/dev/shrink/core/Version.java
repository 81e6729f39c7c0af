package dev.shrink.core;

/** Shrink's version, written into every report and quantization_config's meta. */
public final class Version {
    /** The release, e.g. "0.1.0". */
    public static final String VERSION = "0.1.0";

    private Version() {
    }

    /** "shrink 0.1.0": the "tool" entry of reports. */
    public static String tool() {
        return "shrink " + VERSION;
    }

    /** "shrink:0.1.0": quantization_config.meta.quantizer. */
    public static String quantizer() {
        return "shrink:" + VERSION;
    }
}
