package dev.shrink.calib;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.model.Tokenizer;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.apache.arrow.dataset.file.DatasetFileWriter;
import org.apache.arrow.dataset.file.FileFormat;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowFileWriter;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.ipc.ArrowWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/** Fixtures the calib tests share: the shared folder, tokenizers, Arrow and Parquet files they write. */
final class TestData {
    private static final BufferAllocator PARQUET_WRITER_MEMORY = new RootAllocator();

    private TestData() {
    }

    /** The shared fixtures folder, or the test is skipped. */
    static Path shared() {
        Optional<Path> root = SharedData.root();
        assumeTrue(root.isPresent(), "shared fixtures not found (set -Dshrink.shared or put ../shared beside the checkout)");
        return root.get();
    }

    /** fixture-llama-14m's tokenizer (BOS id 1), or the test is skipped. */
    static Tokenizer fixtureTokenizer() {
        Path file = shared().resolve("models/fixture-llama-14m/tokenizer.json");
        assumeTrue(Files.isRegularFile(file), "missing fixture " + file);
        return Tokenizer.load(file);
    }

    /**
     * A word-level tokenizer that splits on whitespace: {@code words[i]} has id i + 1, anything
     * else is {@code <unk>} = 0. Token ids are then known without a real model.
     */
    static Tokenizer wordTokenizer(Path dir, String... words) throws IOException {
        StringBuilder vocab = new StringBuilder("\"<unk>\": 0");
        for (int i = 0; i < words.length; i++) {
            vocab.append(", \"").append(words[i]).append("\": ").append(i + 1);
        }
        String json = """
                {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                 "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
                 "post_processor": null, "decoder": null,
                 "model": {"type": "WordLevel", "vocab": {%s}, "unk_token": "<unk>"}}
                """.formatted(vocab);
        Path file = dir.resolve("tokenizer.json");
        Files.writeString(file, json);
        return Tokenizer.load(file);
    }

    /** A one-column schema: {@code column} of utf8 (or large_utf8). */
    static Schema stringSchema(String column, boolean large) {
        return new Schema(List.of(Field.nullable(column, large ? new ArrowType.LargeUtf8() : new ArrowType.Utf8())));
    }

    /**
     * Writes {@code values} (nulls allowed) as Arrow IPC stream (or file format) in batches of
     * {@code batch} rows, one utf8 column, plus an int64 column "id" when {@code withId}.
     */
    static void writeArrow(Path file, String column, List<String> values, int batch, boolean large,
                           boolean fileFormat, boolean withId) throws IOException {
        Schema schema = withId
                ? new Schema(List.of(Field.nullable("id", new ArrowType.Int(64, true)),
                        stringSchema(column, large).getFields().get(0)))
                : stringSchema(column, large);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(arrowBytes(schema, column, values, batch, fileFormat));
        }
    }

    static byte[] arrowBytes(Schema schema, String column, List<String> values, int batch, boolean fileFormat)
            throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (BufferAllocator alloc = new RootAllocator();
             VectorSchemaRoot root = VectorSchemaRoot.create(schema, alloc);
             ArrowWriter w = fileFormat ? new ArrowFileWriter(root, null, Channels.newChannel(bytes))
                     : new ArrowStreamWriter(root, null, bytes)) {
            w.start();
            for (int start = 0; start < values.size(); start += batch) {
                int n = Math.min(batch, values.size() - start);
                FieldVector v = root.getVector(column);
                v.allocateNew();
                for (int i = 0; i < n; i++) {
                    String s = values.get(start + i);
                    if (s == null) {
                        v.setNull(i);
                    } else if (v instanceof VarCharVector vc) {
                        vc.setSafe(i, s.getBytes(StandardCharsets.UTF_8));
                    } else {
                        ((LargeVarCharVector) v).setSafe(i, s.getBytes(StandardCharsets.UTF_8));
                    }
                }
                v.setValueCount(n);
                if (root.getVector("id") instanceof BigIntVector ids) {
                    ids.allocateNew(n);
                    for (int i = 0; i < n; i++) {
                        ids.set(i, start + i);
                    }
                    ids.setValueCount(n);
                }
                root.setRowCount(n);
                w.writeBatch();
            }
            w.end();
        }
        return bytes.toByteArray();
    }

    /**
     * Writes {@code values} as a Parquet file with Arrow's C++ writer (the one pyarrow uses) and
     * returns it: {@code dir/name}.
     */
    static Path writeParquet(Path dir, String name, String column, List<String> values, boolean withId)
            throws IOException {
        Schema schema = withId
                ? new Schema(List.of(Field.nullable("id", new ArrowType.Int(64, true)),
                        stringSchema(column, false).getFields().get(0)))
                : stringSchema(column, false);
        byte[] stream = arrowBytes(schema, column, values, 1000, false);
        Path out = Files.createTempDirectory(dir, "parquet-out");
        // The native writer releases the exported batches from its own threads, possibly after
        // write() returns: the allocator is never closed (closing it would report a false leak).
        try (ArrowStreamReader reader = new ArrowStreamReader(new ByteArrayInputStream(stream), PARQUET_WRITER_MEMORY)) {
            DatasetFileWriter.write(PARQUET_WRITER_MEMORY, reader, FileFormat.PARQUET, out.toUri().toString(),
                    new String[0], 1, "part-{i}.parquet");
        }
        Path written = out.resolve("part-0.parquet");
        Path target = dir.resolve(name);
        Files.move(written, target);
        return target;
    }

}
