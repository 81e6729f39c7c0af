package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Map;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The help a person reads: whole first sentences in the command list, paragraphs not cut at source line ends. */
class HelpTextTest {

    static String help(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        assertEquals(0, Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true)), err::toString);
        return out.toString();
    }

    /** The text with picocli's line breaks and indentation undone, to look for whole sentences. */
    static String unwrapped(String text) {
        return text.replaceAll("\\s+", " ");
    }

    @Test
    void reflowJoinsProseAndKeepsBlankAndIndentedLines() {
        String[] in = {"First line of prose", "continues here.", "", "New paragraph:", "  an indented example",
            "  another", "prose again", "%nkept"};
        assertArrayEquals(new String[] {"First line of prose continues here.", "", "New paragraph:",
            "  an indented example", "  another", "prose again %nkept"}, HelpText.reflow(in));
    }

    @Test
    void firstSentenceSkipsAbbreviationsAndYears() {
        assertEquals("Quantize with AWQ (Lin et al. 2023) and write it, e.g. for vLLM.",
                HelpText.firstSentence(new String[] {"Quantize with AWQ (Lin et al. 2023) and write it, e.g. for vLLM.",
                    "Second sentence."}));
        assertEquals("Prune into zeros, which every loader reads.",
                HelpText.firstSentence(new String[] {"Prune into zeros, which every loader reads. config.json records it."}));
    }

    @Test
    void theCommandListShowsEachCommandsWholeFirstSentence() {
        String root = unwrapped(help("--help"));
        CommandLine cl = new CommandLine(new Main());
        for (Map.Entry<String, CommandLine> e : cl.getSubcommands().entrySet()) {
            if (e.getKey().equals("help")) {
                continue;
            }
            String first = HelpText.firstSentence(HelpText.reflow(e.getValue().getCommandSpec().usageMessage().description()));
            assertTrue(first.endsWith("."), () -> e.getKey() + "'s first sentence is cut: " + first);
            assertTrue(root.contains(e.getKey() + " " + first), () -> e.getKey() + ": '" + first + "' not in:\n" + root);
        }
        assertTrue(root.contains("gptq Quantize a model's decoder linears with GPTQ and write a GPTQ folder that transformers "
                + "(gptqmodel), vLLM and LMDeploy load."), root);
    }

    @Test
    void descriptionsAreParagraphsNotSourceLines() {
        String eval = help("eval", "--help");
        // the source's line "...protocol made exact:" / "BOS once, ..." is one paragraph, wrapped once
        assertTrue(unwrapped(eval).contains("protocol made exact: BOS once, non-overlapping windows"), eval);
        for (String line : eval.split("\n")) {
            assertTrue(line.length() <= HelpText.WIDTH, () -> "longer than the help width: " + line);
        }
        // the examples, never re-wrapped, stay one line each
        String root = help("--help");
        assertTrue(root.contains("\n  shrink estimate ../shared/models/fixture-llama-14m --batch 16 --prompt-tokens 512 "
                + "--new-tokens 32 --gpu l4\n"), root);
    }
}
