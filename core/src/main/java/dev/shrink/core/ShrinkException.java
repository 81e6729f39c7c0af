package dev.shrink.core;

import java.nio.file.Path;

/**
 * An error a user can act on: bad input, an unsupported model, a full disk. The CLI prints
 * {@link #getMessage()} as one line and exits with code 2; no stack trace unless --debug.
 * The message always names the file (when there is one) and the problem.
 */
public class ShrinkException extends RuntimeException {
    public ShrinkException(String message) {
        super(message);
    }

    public ShrinkException(String message, Throwable cause) {
        super(message, cause);
    }

    /** "FILE: problem". */
    public static ShrinkException at(Path file, String problem) {
        return new ShrinkException(file + ": " + problem);
    }

    public static ShrinkException at(Path file, String problem, Throwable cause) {
        return new ShrinkException(file + ": " + problem, cause);
    }
}
