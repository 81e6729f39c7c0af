package dev.shrink.cli;

import dev.shrink.core.synth.SyntheticModel;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "synth", mixinStandardHelpOptions = true,
        description = {"Write a Hugging Face folder of a LLaMA, Qwen3 or Qwen3-MoE with random weights of given shapes"
                + " (bf16 or fp16 safetensors, sharded with an index, config.json, a tokenizer), for timing compression"
                + " at real sizes.",
            "Presets: llama2-7b, llama2-13b, qwen3-8b (Qwen3-8B), qwen3-30b-a3b (Qwen3-30B-A3B, 128 experts, 8 per"
                + " token); --layers and the other dimensions override a preset's.",
            "Linears and embeddings ~ N(0, 0.02^2), norms near 1; the same --seed gives the same bytes. The folder"
                + " appears atomically."},
        footer = {"", "Examples:",
            "  shrink synth /tmp/llama2-7b-random --preset llama2-7b                 # 12.6 GiB in bf16",
            "  shrink synth /tmp/qwen3-8b-random --preset qwen3-8b                   # 15.3 GiB in bf16",
            "  shrink synth /tmp/qwen3-moe-4l --preset qwen3-30b-a3b --layers 4      # 5.8 GiB in bf16",
            "  shrink synth /tmp/tiny --hidden 256 --intermediate 688 --layers 4 --heads 4 --vocab 32000 \\",
            "      --tokenizer ../shared/models/llama2-tokenizer --dtype fp16 --seed 1",
            "  shrink synth /tmp/tiny-moe --family qwen3-moe --hidden 64 --intermediate 128 --layers 2 --heads 4 \\",
            "      --kv-heads 2 --head-dim 16 --experts 8 --experts-per-token 2 --moe-intermediate 32 --vocab 500"})
final class SynthCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "OUT", description = "The folder to write (must not exist, or be empty).")
    Path out;

    @Option(names = "--preset", paramLabel = "NAME", description = "Shapes of a known model: llama2-7b, llama2-13b,"
            + " qwen3-8b, qwen3-30b-a3b; the options below override single dimensions (--layers 4 cuts it to four blocks).")
    String preset;

    @Option(names = "--family", paramLabel = "F", description = "llama, qwen3 or qwen3-moe, without a preset (default:"
            + " llama; a preset implies its own).")
    String family;

    @Option(names = "--hidden", paramLabel = "C", description = "Hidden size.")
    Integer hidden;

    @Option(names = "--intermediate", paramLabel = "F", description = "MLP intermediate size.")
    Integer intermediate;

    @Option(names = "--layers", paramLabel = "L", description = "Decoder blocks.")
    Integer layers;

    @Option(names = "--heads", paramLabel = "H", description = "Attention heads.")
    Integer heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "Key/value heads (default: --heads, no GQA).")
    Integer kvHeads;

    @Option(names = "--head-dim", paramLabel = "D", description = "Head dim (default: hidden / heads, or the preset's).")
    Integer headDim;

    @Option(names = "--experts", paramLabel = "E", description = "Experts of each sparse MLP (qwen3-moe).")
    Integer experts;

    @Option(names = "--experts-per-token", paramLabel = "K", description = "Experts each token is routed to (qwen3-moe).")
    Integer expertsPerToken;

    @Option(names = "--moe-intermediate", paramLabel = "FE", description = "An expert's intermediate size (qwen3-moe).")
    Integer moeIntermediate;

    @Option(names = "--vocab", paramLabel = "V", description = "Vocabulary size.")
    Integer vocab;

    @Option(names = "--max-positions", paramLabel = "P", description = "max_position_embeddings (default: the preset's, else 2048).")
    Integer maxPositions;

    @Option(names = "--dtype", defaultValue = "bf16", paramLabel = "T", description = "bf16 or fp16 (default: ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--shard-mib", defaultValue = "4096", paramLabel = "MIB",
            description = "Largest weight file, MiB (default: ${DEFAULT-VALUE}).")
    long shardMib;

    @Option(names = "--tokenizer", paramLabel = "DIR", description = "Copy the tokenizer files of this folder (its ids"
            + " must fit --vocab); default: a generated word-level tokenizer of the model's vocabulary.")
    Path tokenizer;

    @Option(names = "--overwrite", description = "Replace OUT if it holds files.")
    boolean overwrite;

    @Option(names = {"-q", "--quiet"}, description = "Print only the summary.")
    boolean quiet;

    @Option(names = "--debug", description = "Print stack traces with errors.")
    boolean debug;

    @Option(names = "--json", description = "Print the summary as JSON on stdout (keys: docs/JSON.md); progress goes to stderr.")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        SyntheticModel.Options opts;
        try {
            SyntheticModel.Shape shape = SyntheticModel.shape(preset, new SyntheticModel.Dims(family, hidden, intermediate,
                    layers, heads, kvHeads, headDim, vocab, maxPositions, experts, expertsPerToken, moeIntermediate));
            if (shardMib <= 0) {
                throw new IllegalArgumentException("--shard-mib must be positive, got " + shardMib);
            }
            opts = new SyntheticModel.Options(shape, SyntheticModel.dtype(dtype), seed, shardMib << 20, tokenizer, preset);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        PrintWriter progress = json ? spec.commandLine().getErr() : o;
        SyntheticModel.Summary s = SyntheticModel.write(out, opts, overwrite, quiet ? null : progress::println);
        if (json) {
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("command", "synth");
            doc.put("output", s.dir().toAbsolutePath().normalize().toString());
            doc.put("files", s.files());
            doc.put("bytes", s.bytes());
            doc.put("parameters", s.parameters());
            doc.put("dtype", dtype);
            doc.put("seed", seed);
            doc.put("seconds", s.seconds());
            o.println(Json.write(doc));
        } else {
            o.println(s.describe());
        }
        return 0;
    }
}
