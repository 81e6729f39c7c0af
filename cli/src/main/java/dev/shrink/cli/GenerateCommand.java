package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.eval.Generator;
import dev.shrink.eval.LoadedModel;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continue a prompt with the model (KV-cache decoding).",
            "Temperature 0 is greedy and reproducible; above 0 samples with --seed."},
        footer = {"", "Example:",
            "  shrink generate ../shared/models/fixture-llama-14m --prompt \"Once upon a time\" --max-new-tokens 40"})
final class GenerateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    HubOptions hub;

    @Mixin
    ModelOption modelArg;

    @Mixin
    KvCacheOptions kv;

    Path model;

    @Option(names = "--prompt", required = true, description = "Text to continue (BOS is prepended).")
    String prompt;

    @Option(names = "--max-new-tokens", defaultValue = "64", paramLabel = "N", description = "Default: ${DEFAULT-VALUE}.")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0", paramLabel = "T", description = "0 = greedy. Default: ${DEFAULT-VALUE}.")
    double temperature;

    @Option(names = "--seed", defaultValue = "0", description = "Sampling seed. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--ignore-eos", description = "Keep going after the end-of-sequence token.")
    boolean ignoreEos;

    @Override
    public Integer call() {
        model = hub.resolve(modelArg.required("generate"), common.quiet);
        if (maxNewTokens < 1) {
            throw new ShrinkException("--max-new-tokens must be ≥ 1, got " + maxNewTokens);
        }
        if (temperature < 0 || Double.isNaN(temperature)) {
            throw new ShrinkException("--temperature must be ≥ 0, got " + temperature);
        }
        dev.shrink.core.forward.KvCacheType kvCache = kv.type();
        PrintWriter out = spec.commandLine().getOut();
        try (LoadedModel m = LoadedModel.open(model, common.ops())) {
            int[] promptIds = m.tokenStream(prompt);
            if (promptIds.length == 0) {
                throw new ShrinkException("--prompt gives no tokens and " + m.dir().dir().resolve("config.json")
                        + " has no bos_token_id to start from: give a non-empty prompt");
            }
            if (promptIds.length + (long) maxNewTokens > m.dir().config().maxPositions()) {
                throw new ShrinkException("prompt (" + promptIds.length + " tokens) + --max-new-tokens " + maxNewTokens
                        + " exceeds the model's max_position_embeddings " + m.dir().config().maxPositions());
            }
            long t0 = System.nanoTime();
            int[] all = Generator.generate(m.lm().withKvCache(kvCache), promptIds, maxNewTokens, temperature, seed,
                    ignoreEos ? java.util.List.of() : m.dir().config().eosTokenIds(), id -> { });
            double secs = (System.nanoTime() - t0) / 1e9;
            int[] gen = java.util.Arrays.copyOfRange(all, promptIds.length, all.length);
            String text = m.tokenizer().decode(all, true);
            if (common.json) {
                Map<String, Object> doc = new LinkedHashMap<>();
                doc.put("model", model.toAbsolutePath().normalize().toString());
                doc.put("backend", m.lm().decoder().ops().name());
                doc.put("prompt", prompt);
                doc.put("text", text);
                doc.put("prompt_ids", promptIds);
                doc.put("new_ids", gen);
                doc.put("temperature", temperature);
                doc.put("seed", seed);
                doc.put("seconds", secs);
                out.println(Json.write(doc));
            } else {
                out.println(text);
            }
            if (!common.quiet) {
                System.err.printf(Locale.ROOT, "shrink: %d prompt + %d new tokens in %.2f s (%.1f tok/s, %s, KV cache %s)%n",
                        promptIds.length, gen.length, secs, gen.length / secs, m.lm().decoder().ops().name(), kvCache.id());
            }
        }
        return 0;
    }
}
