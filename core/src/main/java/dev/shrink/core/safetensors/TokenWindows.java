package dev.shrink.core.safetensors;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.tensor.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

/**
 * Token-window files: a safetensors file with one tensor {@code input_ids} of shape
 * [n, seqlen], int32 (int64 is read too), as in shared/golden's
 * {@code fixture-llama-14m.calib-c4-128x512.safetensors}. Such a file pins the exact calibration
 * data of a run, so that runs (and the Python references) compare number for number.
 */
public final class TokenWindows {
    /** The tensor name. */
    public static final String TENSOR = "input_ids";

    private TokenWindows() {
    }

    /**
     * The windows of a token-window file, one row per window.
     *
     * @throws ShrinkException if the file is not valid safetensors, has no {@code input_ids}, or it
     *                         is not a non-empty rank-2 I32/I64 tensor (values must fit in an int)
     */
    public static int[][] read(Path file) {
        return read(file, -1);
    }

    /**
     * {@link #read(Path)}, every id checked to be in [0, vocab): windows made with another model's
     * tokenizer are refused here, naming the file, rather than indexing past the embedding later.
     * A negative {@code vocab} checks nothing.
     *
     * @throws ShrinkException also for an id outside [0, vocab)
     */
    public static int[][] read(Path file, int vocab) {
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            TensorInfo t = st.info(TENSOR).orElseThrow(() -> ShrinkException.at(file,
                    "no tensor '" + TENSOR + "': a token-window file holds " + TENSOR + " [n, seqlen] int32"));
            if (t.dtype() != DType.I32 && t.dtype() != DType.I64) {
                throw ShrinkException.at(file, "tensor '" + TENSOR + "' is " + t.dtype().safetensorsName()
                        + ", expected I32 (or I64) token ids");
            }
            long[] shape = t.shape();
            if (shape.length != 2) {
                throw ShrinkException.at(file, "tensor '" + TENSOR + "' has shape " + Arrays.toString(shape)
                        + ", expected [n, seqlen]");
            }
            if (shape[0] == 0 || shape[1] == 0) {
                throw ShrinkException.at(file, "tensor '" + TENSOR + "' has shape " + Arrays.toString(shape)
                        + ": no tokens");
            }
            int[] flat = st.readInts(TENSOR);
            for (int i = 0; vocab >= 0 && i < flat.length; i++) {
                if (flat[i] < 0 || flat[i] >= vocab) {
                    throw ShrinkException.at(file, "token id " + flat[i] + " (window " + i / shape[1] + ", position "
                            + i % shape[1] + ") is outside the model's vocabulary of " + vocab
                            + ": were these windows made with another model's tokenizer?");
                }
            }
            int n = Math.toIntExact(shape[0]);
            int seqlen = Math.toIntExact(shape[1]);
            int[][] out = new int[n][];
            for (int i = 0; i < n; i++) {
                out[i] = Arrays.copyOfRange(flat, i * seqlen, (i + 1) * seqlen);
            }
            return out;
        }
    }

    /**
     * Writes {@code windows} as {@code input_ids} int32 [n, seqlen], atomically (a temporary file
     * renamed over the target).
     *
     * @throws IllegalArgumentException if there are no windows, or they are empty or of unequal length
     * @throws ShrinkException          if the file cannot be written
     */
    public static void write(Path file, int[][] windows) {
        int seqlen = checkRectangular(windows);
        int[] flat = new int[Math.multiplyExact(windows.length, seqlen)];
        for (int i = 0; i < windows.length; i++) {
            System.arraycopy(windows[i], 0, flat, i * seqlen, seqlen);
        }
        SafetensorsWriter.write(file,
                List.of(TensorData.ofInts(TENSOR, new long[] {windows.length, seqlen}, flat)), null);
    }

    /**
     * Hex SHA-256 identifying the windows in reports: the digest of the shape as two little-endian
     * int64 (n, seqlen) followed by every id as a little-endian int32, row-major. In Python:
     * {@code hashlib.sha256(struct.pack('<qq', n, seqlen) + ids.astype('<i4').tobytes()).hexdigest()}.
     *
     * @throws IllegalArgumentException if the windows are empty or of unequal length
     */
    public static String fingerprint(int[][] windows) {
        int seqlen = checkRectangular(windows);
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JDK", e);
        }
        ByteBuffer shape = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        shape.putLong(windows.length).putLong(seqlen).flip();
        sha.update(shape);
        ByteBuffer row = ByteBuffer.allocate(4 * seqlen).order(ByteOrder.LITTLE_ENDIAN);
        for (int[] w : windows) {
            row.clear();
            row.asIntBuffer().put(w);
            sha.update(row.array());
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    /** The common length of the rows. */
    private static int checkRectangular(int[][] windows) {
        if (windows == null || windows.length == 0) {
            throw new IllegalArgumentException("no windows");
        }
        int seqlen = windows[0].length;
        if (seqlen == 0) {
            throw new IllegalArgumentException("empty windows");
        }
        for (int i = 1; i < windows.length; i++) {
            if (windows[i].length != seqlen) {
                throw new IllegalArgumentException("window " + i + " has " + windows[i].length
                        + " tokens, window 0 has " + seqlen);
            }
        }
        return seqlen;
    }
}
