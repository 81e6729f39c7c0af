package dev.shrink.cli;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Help.Column;
import picocli.CommandLine.Help.TextTable;
import picocli.CommandLine.Model.CommandSpec;

/**
 * How help text is laid out. Commands write their descriptions as source lines of prose; picocli
 * would print each source line as a line of its own and wrap it again (ragged lines, sentences cut).
 * {@link #install} joins the lines of each paragraph, keeping blank lines and indented lines (lists,
 * formulas, examples) as they are, and lists the commands in {@code shrink --help} with the whole
 * first sentence of their descriptions.
 */
final class HelpText {

    private HelpText() {
    }

    /**
     * Help is laid out {@value #WIDTH} columns wide (wider on a wider terminal) so that example command
     * lines, which are never re-wrapped, fit on one line.
     */
    static final int WIDTH = 120;

    /** Reflows every command's description under {@code root} and renders root's command list. */
    static void install(CommandLine root) {
        root.setUsageHelpWidth(WIDTH);
        root.setUsageHelpAutoWidth(true);
        reflowAll(root);
        root.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_COMMAND_LIST, HelpText::commandList);
    }

    private static void reflowAll(CommandLine cl) {
        CommandSpec spec = cl.getCommandSpec();
        spec.usageMessage().description(reflow(spec.usageMessage().description()));
        for (CommandLine sub : cl.getSubcommands().values()) {
            reflowAll(sub);
        }
    }

    /**
     * Joins prose lines into paragraphs: a line is appended to the one before it when both are
     * non-blank and neither starts with a space. Blank and indented lines stay lines of their own.
     */
    static String[] reflow(String[] lines) {
        List<String> out = new ArrayList<>();
        boolean joinable = false;
        for (String line : lines) {
            boolean prose = !line.isBlank() && !Character.isWhitespace(line.charAt(0));
            if (prose && joinable) {
                out.set(out.size() - 1, out.getLast().stripTrailing() + " " + line.strip());
            } else {
                out.add(line);
            }
            joinable = prose;
        }
        return out.toArray(String[]::new);
    }

    private static final List<String> ABBREVIATIONS = List.of("e.g", "i.e", "al", "vs", "cf", "etc");

    /**
     * The first sentence of a description: its first paragraph up to the first ". " that ends a
     * sentence (not "et al. 2023", "e.g. x").
     */
    static String firstSentence(String[] description) {
        String p = String.join(" ", description).replace("%n", " ").strip();
        for (int i = p.indexOf(". "); i >= 0; i = p.indexOf(". ", i + 1)) {
            String before = p.substring(p.lastIndexOf(' ', i) + 1, i);
            char after = i + 2 < p.length() ? p.charAt(i + 2) : ' ';
            if (Character.isLetter(after) && !ABBREVIATIONS.contains(before)) {
                return p.substring(0, i + 1);
            }
        }
        return description.length == 0 ? "" : description[0].replace("%n", " ").strip();
    }

    private static String commandList(CommandLine.Help help) {
        Map<String, CommandLine.Help> subs = help.subcommands();
        if (subs.isEmpty()) {
            return "";
        }
        int nameWidth = 2;
        for (String name : subs.keySet()) {
            nameWidth = Math.max(nameWidth, name.length() + 4);
        }
        int width = help.commandSpec().usageMessage().width();
        TextTable table = TextTable.forColumns(help.colorScheme(),
                new Column(nameWidth, 2, Column.Overflow.SPAN),
                new Column(Math.max(20, width - nameWidth), 2, Column.Overflow.WRAP));
        for (Map.Entry<String, CommandLine.Help> e : subs.entrySet()) {
            var usage = e.getValue().commandSpec().usageMessage();
            table.addRowValues(e.getKey(), firstSentence(usage.header().length > 0 ? usage.header() : usage.description()));
        }
        return table.toString();
    }
}
