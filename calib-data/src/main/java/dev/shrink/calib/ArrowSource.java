package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VariableWidthFieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Reads the string column of an Arrow IPC file: the stream format of Hugging Face datasets cache
 * files, or the file format (recognised by its "ARROW1" magic). Also the batch-draining helper
 * {@link ParquetSource} uses.
 */
final class ArrowSource {
    private static final byte[] FILE_MAGIC = "ARROW1".getBytes(StandardCharsets.US_ASCII);

    private ArrowSource() {
    }

    static List<String> read(Path file, String field) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
             BufferAllocator alloc = new RootAllocator();
             ArrowReader reader = isFileFormat(ch) ? new ArrowFileReader(ch, alloc) : new ArrowStreamReader(ch, alloc)) {
            Schema schema;
            try {
                schema = reader.getVectorSchemaRoot().getSchema();
            } catch (IOException | RuntimeException e) {
                throw ShrinkException.at(file, "not an Arrow IPC stream or file (a Hugging Face datasets .arrow): "
                        + CalibSource.firstLine(e.getMessage()), e);
            }
            checkStringColumn(file, schema, field);
            return drain(file, reader, field);
        } catch (IOException e) {
            throw CalibSource.readError(file, e);
        }
    }

    private static boolean isFileFormat(FileChannel ch) throws IOException {
        ByteBuffer head = ByteBuffer.allocate(FILE_MAGIC.length);
        while (head.hasRemaining() && ch.read(head, head.position()) > 0) {
            // keep reading: a short read is allowed
        }
        return !head.hasRemaining() && java.util.Arrays.equals(head.array(), FILE_MAGIC);
    }

    /** Checks that {@code field} is a column of a string type (utf8, large_utf8, utf8_view). */
    static void checkStringColumn(Path file, Schema schema, String field) {
        Field f = schema.getFields().stream().filter(x -> x.getName().equals(field)).findFirst().orElse(null);
        if (f == null) {
            List<String> names = schema.getFields().stream().map(Field::getName).toList();
            throw ShrinkException.at(file, "no column '" + field + "' (columns: " + String.join(", ", names)
                    + "); choose one with the field option");
        }
        ArrowType t = f.getType();
        if (!(t instanceof ArrowType.Utf8 || t instanceof ArrowType.LargeUtf8 || t instanceof ArrowType.Utf8View)) {
            throw ShrinkException.at(file, "column '" + field + "' is " + t + ", not a string column");
        }
    }

    /** Every non-null value of the string column {@code field}, batch after batch, in order. */
    static List<String> drain(Path file, ArrowReader reader, String field) {
        List<String> out = new ArrayList<>();
        try {
            VectorSchemaRoot root = reader.getVectorSchemaRoot();
            while (reader.loadNextBatch()) {
                FieldVector v = root.getVector(field);
                if (!(v instanceof VariableWidthFieldVector strings)) {
                    throw ShrinkException.at(file, "column '" + field + "' is "
                            + (v == null ? "missing in a batch" : v.getField().getType()) + ", not a string column");
                }
                int n = v.getValueCount();
                for (int i = 0; i < n; i++) {
                    if (!v.isNull(i)) {
                        out.add(new String(strings.get(i), StandardCharsets.UTF_8));
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof ShrinkException se) {
                throw se;
            }
            throw ShrinkException.at(file, "cannot read the record batches (corrupt or truncated?): "
                    + CalibSource.firstLine(e.getMessage()), e);
        }
        return out;
    }
}
