package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.OpsProvider;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code shrink} command. Exit codes: 0 success; 2 a problem with the input or the options
 * (one line on stderr naming the file and the problem); 1 an internal error (a bug: the stack
 * trace is printed); 3 {@code compare}'s regression gate failed; 4 out of memory (one line saying
 * what to raise, SHRINK_HEAP, or which option to lower: retrying with more memory may succeed,
 * unlike after exit 2).
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
            "  shrink eval ../shared/models/fixture-llama-14m --dataset heldout --max-windows 8",
            "  shrink inspect ../shared/models/stories260K-hf",
            "  shrink compare examples/compare.yaml",
            "  shrink generate ../shared/models/fixture-llama-14m --prompt \"Once upon a time\"",
            "  shrink estimate ../shared/models/fixture-llama-14m --batch 16 --prompt-tokens 512 --new-tokens 32 --gpu l4",
            "",
            "Exit codes: 0 done; 1 internal error (a bug); 2 bad input or options;",
            "  3 compare's gate failed; 4 out of memory (SHRINK_HEAP=16g raises the heap)."})
public final class Main implements Runnable {
    public static final String VERSION = dev.shrink.core.Version.VERSION;

    /** The exit code for bad input or options. */
    public static final int EXIT_BAD_INPUT = 2;

    /** The exit code when the Java heap ran out: a retry with a larger SHRINK_HEAP may succeed. */
    public static final int EXIT_OUT_OF_MEMORY = 4;

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
        HelpText.install(cl);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("shrink: " + ex.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(ex, err);
            err.println("Try '" + ex.getCommandLine().getCommandSpec().qualifiedName() + " --help'.");
            return EXIT_BAD_INPUT;
        });
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            OutOfMemoryError oom = outOfMemoryIn(t);
            if (oom != null) {
                return outOfMemory(oom, commandLine, err, debug);
            }
            if (t instanceof ShrinkException) {
                err.println("shrink: error: " + oneLine(t.getMessage()));
                if (debug) {
                    t.printStackTrace(err);
                }
                return EXIT_BAD_INPUT;
            }
            err.println("shrink: internal error: " + t);
            t.printStackTrace(err);
            return 1;
        });
        try {
            return cl.execute(args);
        } catch (OutOfMemoryError e) {
            // picocli hands only Exceptions to the handler above; an Error thrown by a command ends here
            CommandLine.ParseResult parsed = cl.getParseResult();
            CommandLine command = cl;
            while (parsed != null && parsed.subcommand() != null) {
                parsed = parsed.subcommand();
                command = parsed.commandSpec().commandLine();
            }
            return outOfMemory(e, command, err, debug);
        }
    }

    /** The OutOfMemoryError in {@code t}'s cause chain (a stage may wrap one), or null. */
    private static OutOfMemoryError outOfMemoryIn(Throwable t) {
        for (int depth = 0; t != null && depth < 16; t = t.getCause(), depth++) {
            if (t instanceof OutOfMemoryError oom) {
                return oom;
            }
        }
        return null;
    }

    /**
     * Reports running out of Java heap in one line: the heap's limit, the setting to raise and the
     * options of {@code command} that ask for less memory at once; returns {@link #EXIT_OUT_OF_MEMORY}.
     */
    static int outOfMemory(OutOfMemoryError e, CommandLine command, PrintWriter err, boolean debug) {
        long max = Runtime.getRuntime().maxMemory();
        long suggestGiB = Math.max(1, (2 * max + (1L << 30) - 1) >> 30);
        String lower = switch (command == null ? "" : command.getCommandName()) {
            case "eval" -> ", or a smaller --seqlen or dataset";
            case "generate" -> ", or fewer --max-new-tokens";
            case "gptq", "awq", "prune" -> ", or a smaller --batch, --calib-samples or --calib-seqlen";
            case "distill" -> ", or a smaller --batch, --micro-batch or --seqlen";
            case "compare" -> ", or smaller settings in the recipe";
            default -> "";
        };
        String what = e.getMessage() == null || e.getMessage().isBlank() ? "" : oneLine(e.getMessage()) + "; ";
        err.println("shrink: error: out of memory (" + what + "the Java heap is limited to " + (max >> 20)
                + " MiB): raise it with SHRINK_HEAP (e.g. SHRINK_HEAP=" + suggestGiB + "g)" + lower);
        if (debug) {
            e.printStackTrace(err);
        }
        return EXIT_OUT_OF_MEMORY;
    }

    static String oneLine(String s) {
        return s == null ? "" : s.replace('\n', ' ').replace('\r', ' ');
    }

    /**
     * Reports the version, the source revision the CLI was built from, the Java runtime, and each
     * backend: what it runs on here, or the one-line reason it cannot run.
     */
    public static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            List<String> lines = new ArrayList<>();
            lines.add("shrink " + VERSION + " (revision " + revision() + ")");
            lines.add("Java " + Runtime.version() + " (" + System.getProperty("java.vendor") + ", "
                    + System.getProperty("java.home") + ")");
            for (OpsProvider p : Backends.providers()) {
                String what;
                try {
                    what = p.available()
                            ? "available" + (p.describe().isEmpty() ? "" : ": " + p.describe())
                            : "unavailable: " + p.unavailableReason();
                } catch (RuntimeException | LinkageError e) {
                    what = "unavailable: " + e;
                }
                lines.add("backend " + p.device() + ": " + oneLine(what));
            }
            // picocli formats each line with String.format
            return lines.stream().map(s -> s.replace("%", "%%")).toArray(String[]::new);
        }

        /** The revision baked in at build time (cli/pom.xml filters build.properties), or "unknown". */
        static String revision() {
            Properties p = new Properties();
            try (InputStream in = Main.class.getResourceAsStream("build.properties")) {
                if (in != null) {
                    p.load(in);
                }
            } catch (IOException e) {
                return "unknown";
            }
            String r = p.getProperty("revision", "").strip();
            return r.isEmpty() || r.startsWith("${") ? "unknown" : r;
        }
    }
}
