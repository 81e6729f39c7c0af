package dev.shrink.prune;

import dev.shrink.core.ShrinkException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * A pattern over a linear's full name ({@code model.layers.3.mlp.down_proj}), as {@code --targets}
 * and {@code --ignore} take them: a glob by default ({@code *} any characters, dots included; the
 * rest literal), or a Java regular expression after a {@code re:} prefix. Either must match the
 * whole name.
 *
 * @param text  the pattern as written
 * @param regex what it compiles to
 */
public record NamePattern(String text, Pattern regex) {

    /** The pattern {@code text}; a {@link ShrinkException} for an empty one or a bad regex. */
    public static NamePattern of(String text) {
        if (text == null || text.isBlank()) {
            throw new ShrinkException("an empty name pattern");
        }
        if (text.startsWith("re:")) {
            try {
                return new NamePattern(text, Pattern.compile(text.substring(3)));
            } catch (PatternSyntaxException e) {
                throw new ShrinkException("pattern '" + text + "' is not a valid regular expression: "
                        + e.getDescription());
            }
        }
        return new NamePattern(text, Pattern.compile(globToRegex(text)));
    }

    private static String globToRegex(String glob) {
        StringBuilder re = new StringBuilder();
        String[] parts = glob.split("\\*", -1);
        for (int i = 0; i < parts.length; i++) {
            if (i > 0) {
                re.append(".*");
            }
            if (!parts[i].isEmpty()) {
                re.append(Pattern.quote(parts[i]));
            }
        }
        return re.toString();
    }

    /** Whether the whole name matches. */
    public boolean matches(String name) {
        return regex.matcher(name).matches();
    }

    /**
     * The patterns of option values: each value is split on commas, except a value that starts with
     * {@code re:}, which is one regular expression (commas included).
     */
    public static List<String> split(List<String> values) {
        List<String> out = new ArrayList<>();
        if (values == null) {
            return out;
        }
        for (String v : values) {
            if (v.startsWith("re:")) {
                out.add(v);
                continue;
            }
            for (String p : v.split(",", -1)) {
                String s = p.strip();
                if (s.isEmpty()) {
                    throw new ShrinkException("an empty name pattern in '" + v + "'");
                }
                out.add(s);
            }
        }
        return out;
    }
}
