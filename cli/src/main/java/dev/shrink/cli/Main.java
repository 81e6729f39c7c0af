package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import java.io.PrintWriter;
import java.util.Arrays;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code shrink} command. Exit codes: 0 success; 2 a problem with the input or the options
 * (one line on stderr naming the file and the problem); 1 an internal error (a bug: the stack
 * trace is printed); 3 {@code compare}'s regression gate failed.
 */
@Command(name = "shrink", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = {
            "Compress Hugging Face language models: quantize, prune, distill, evaluate and compare.",
            "",
            "Models are Hugging Face folders (config.json, *.safetensors, tokenizer.json).",
            "Pickle checkpoints (.bin, .pt) are never read: loading one runs code from the file."},
        subcommands = {EvalCommand.class, GptqCommand.class, AwqCommand.class, PruneCommand.class, DistillCommand.class,
            SynthCommand.class,
            CompareCommand.class,
            InspectCommand.class, GenerateCommand.class, EstimateCommand.class,
            CommandLine.HelpCommand.class},
        footer = {"", "Examples:",
            "  shrink eval --model ../shared/models/fixture-llama-14m --dataset heldout --max-windows 8",
            "  shrink inspect --model ../shared/models/stories260K-hf",
            "  shrink compare examples/compare.yaml",
            "  shrink generate --model ../shared/models/fixture-llama-14m --prompt \"Once upon a time\"",
            "  shrink estimate ../shared/models/fixture-llama-14m --batch 16 --prompt-tokens 512 --new-tokens 32 --gpu l4"})
public final class Main implements Runnable {
    public static final String VERSION = dev.shrink.core.Version.VERSION;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "name a command (see shrink --help)");
    }

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the CLI with the given streams; returns the exit code. */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        boolean debug = Arrays.asList(args).contains("--debug");
        dev.shrink.core.util.Warnings.sink(err);
        CommandLine cl = new CommandLine(new Main());
        cl.setOut(out);
        cl.setErr(err);
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("shrink: " + ex.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(ex, err);
            err.println("Try '" + ex.getCommandLine().getCommandSpec().qualifiedName() + " --help'.");
            return 2;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            if (t instanceof ShrinkException) {
                err.println("shrink: error: " + oneLine(t.getMessage()));
                if (debug) {
                    t.printStackTrace(err);
                }
                return 2;
            }
            if (t instanceof OutOfMemoryError) {
                err.println("shrink: error: out of memory (raise the heap with SHRINK_HEAP=16g, or use a smaller --batch)");
                return 2;
            }
            err.println("shrink: internal error: " + t);
            t.printStackTrace(err);
            return 1;
        });
        return cl.execute(args);
    }

    static String oneLine(String s) {
        return s == null ? "" : s.replace('\n', ' ').replace('\r', ' ');
    }

    /** Reports the version. */
    public static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"shrink " + VERSION + " (Java " + Runtime.version() + ")"};
        }
    }
}
