package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every kind of bad input gets one line on stderr naming the file and the problem, exit code 2,
 * and no stack trace (unless --debug).
 */
class BadInputTest {
    @TempDir
    Path tmp;

    record Run(int code, String out, String err) {
    }

    static Run shrink(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Run(code, out.toString(), err.toString());
    }

    /** A copy of stories260K-hf (config, tokenizer, weights) in a temp folder, to corrupt. */
    Path modelCopy() throws IOException {
        return modelCopy(tmp);
    }

    /** A copy of stories260K-hf in {@code tmp}/model. */
    static Path modelCopy(Path tmp) throws IOException {
        Path src = SharedData.root().map(p -> p.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(src), "shared fixtures not found");
        Path dst = tmp.resolve("model");
        Files.createDirectories(dst);
        for (String f : new String[] {"config.json", "tokenizer.json", "model.safetensors"}) {
            Files.copy(src.resolve(f), dst.resolve(f));
        }
        return dst;
    }

    /** Writes a safetensors file whose header is {@code json} and whose data is {@code dataBytes} zero bytes. */
    static void writeSafetensors(Path file, String json, int dataBytes) throws IOException {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(file, b.array());
    }

    static void assertOneLineError(Run r, String fileName, String problemWord) {
        assertEquals(2, r.code(), () -> "exit code; stderr: " + r.err());
        String[] lines = r.err().strip().split("\n");
        String errLine = lines[lines.length - 1];
        assertEquals(1, lines.length, () -> "one line expected, got:\n" + r.err());
        assertTrue(errLine.startsWith("shrink: error: "), errLine);
        assertTrue(errLine.contains(fileName), () -> "names the file " + fileName + ": " + errLine);
        assertTrue(errLine.toLowerCase().contains(problemWord.toLowerCase()), () -> "says '" + problemWord + "': " + errLine);
        assertFalse(r.err().contains("\tat "), "no stack trace");
    }

    Run evalOn(Path model) {
        return shrink("eval", "--model", model.toString(), "--dataset", "tinystories", "--max-windows", "1", "-q");
    }

    void corruptWeights(Path model, Consumer<Path> how) {
        how.accept(model.resolve("model.safetensors"));
    }

    @Test
    void truncatedSafetensors() throws IOException {
        Path m = modelCopy();
        Path f = m.resolve("model.safetensors");
        byte[] all = Files.readAllBytes(f);
        Files.write(f, java.util.Arrays.copyOf(all, all.length - 1000));
        assertOneLineError(evalOn(m), "model.safetensors", "truncated");
    }

    @Test
    void headerLengthPastTheEnd() throws IOException {
        Path m = modelCopy();
        Path f = m.resolve("model.safetensors");
        ByteBuffer b = ByteBuffer.allocate(8 + 16).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(5000);
        Files.write(f, b.array());
        assertOneLineError(evalOn(m), "model.safetensors", "header");
    }

    @Test
    void headerOver100MB() throws IOException {
        Path m = modelCopy();
        Path f = m.resolve("model.safetensors");
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(200L * 1024 * 1024);
        Files.write(f, b.array());
        assertOneLineError(evalOn(m), "model.safetensors", "header");
    }

    @Test
    void overlappingOffsets() throws IOException {
        Path m = modelCopy();
        writeSafetensors(m.resolve("model.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        + "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24);
        assertOneLineError(evalOn(m), "model.safetensors", "overlap");
    }

    @Test
    void offsetsOutOfRange() throws IOException {
        Path m = modelCopy();
        writeSafetensors(m.resolve("model.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        + "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 20);
        Run r = evalOn(m);
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("model.safetensors"), r.err());
    }

    @Test
    void unknownDtype() throws IOException {
        Path m = modelCopy();
        writeSafetensors(m.resolve("model.safetensors"),
                "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
        assertOneLineError(evalOn(m), "model.safetensors", "dtype");
    }

    @Test
    void shapeDoesNotMatchBytes() throws IOException {
        Path m = modelCopy();
        writeSafetensors(m.resolve("model.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,24]}}", 24);
        assertOneLineError(evalOn(m), "model.safetensors", "shape");
    }

    @Test
    void indexPointingOutsideTheFolder() throws IOException {
        Path m = modelCopy();
        Files.writeString(m.resolve("model.safetensors.index.json"),
                "{\"metadata\":{\"total_size\":4},\"weight_map\":{\"model.norm.weight\":\"../evil.safetensors\"}}");
        assertOneLineError(evalOn(m), "model.safetensors.index.json", "../evil.safetensors");
    }

    @Test
    void configMissingAField() throws IOException {
        Path m = modelCopy();
        Path c = m.resolve("config.json");
        Files.writeString(c, Files.readString(c).replace("\"hidden_size\"", "\"hidden_sizeX\""));
        assertOneLineError(evalOn(m), "config.json", "hidden_size");
    }

    @Test
    void unsupportedArchitecture() throws IOException {
        Path m = modelCopy();
        Path c = m.resolve("config.json");
        Files.writeString(c, Files.readString(c).replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        assertOneLineError(evalOn(m), "config.json", "unsupported architecture 'GPT2LMHeadModel'");
    }

    @Test
    void pickleCheckpointsAreRefused() throws IOException {
        Path m = modelCopy();
        Files.delete(m.resolve("model.safetensors"));
        Files.write(m.resolve("pytorch_model.bin"), new byte[] {(byte) 0x80, 2});
        assertOneLineError(evalOn(m), "pytorch_model.bin", "pickle");
        Path pt = tmp.resolve("model.pt");
        Files.write(pt, new byte[] {(byte) 0x80, 2});
        assertOneLineError(shrink("inspect", "--model", pt.toString()), "model.pt", "pickle");
    }

    @Test
    void missingTokenizer() throws IOException {
        Path m = modelCopy();
        Files.delete(m.resolve("tokenizer.json"));
        assertOneLineError(evalOn(m), "tokenizer.json", "tokenizer");
    }

    @Test
    void weightShapeDisagreesWithConfig() throws IOException {
        Path m = modelCopy();
        Path c = m.resolve("config.json");
        Files.writeString(c, Files.readString(c).replace("\"intermediate_size\": 172", "\"intermediate_size\": 176"));
        Run r = evalOn(m);
        assertOneLineError(r, "mlp.gate_proj.weight", "shape");
    }

    @Test
    void missingDatasetFile() throws IOException {
        Path m = modelCopy();
        Run r = shrink("eval", "--model", m.toString(), "--dataset", tmp.resolve("nope.txt").toString(), "-q");
        assertOneLineError(r, "nope.txt", "file");
    }

    @Test
    void debugShowsTheStackTrace() throws IOException {
        Path m = modelCopy();
        Path c = m.resolve("config.json");
        Files.writeString(c, "{not json");
        Run r = shrink("eval", "--model", m.toString(), "--debug", "-q");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("\tat "), "stack trace with --debug");
    }

    @Test
    void unknownOptionIsAUsageError() {
        Run missing = shrink("eval", "x", "--datset", "heldout"); // the model is MODEL; --model is a hidden alias
        assertEquals(2, missing.code());
        assertTrue(missing.err().contains("--datset") && missing.err().contains("--dataset"), missing.err());
        Run unknown = shrink("eval", "--model", "x", "--max-window", "3");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("--max-window") && unknown.err().contains("--max-windows"),
                "names the unknown option and suggests the right one: " + unknown.err());
    }
}
