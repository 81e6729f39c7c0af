package dev.shrink.core.hub;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Where the Hugging Face Hub and its cache are, read from the same environment variables as
 * huggingface_hub's {@code constants.py}, so a cache filled by any Hugging Face tool is found:
 * <ul>
 *   <li>cache: {@code HF_HUB_CACHE}, else {@code HUGGINGFACE_HUB_CACHE}, else {@code HF_HOME/hub};
 *       {@code HF_HOME} defaults to {@code $XDG_CACHE_HOME/huggingface}, else {@code ~/.cache/huggingface};</li>
 *   <li>endpoint: {@code HF_ENDPOINT} (default {@code https://huggingface.co}, trailing slashes dropped);</li>
 *   <li>token: {@code HF_TOKEN}, else the file {@code HF_TOKEN_PATH} (default {@code HF_HOME/token}, where
 *       {@code hf auth login} stores it);</li>
 *   <li>offline: {@code HF_HUB_OFFLINE} (or {@code TRANSFORMERS_OFFLINE}) set to 1, ON, YES or TRUE.</li>
 * </ul>
 * The environment cannot be changed inside a running JVM, so {@link #fromEnvironment()} lets a
 * system property {@code shrink.hub.env.NAME} stand in for the variable NAME (the build sets them so
 * that no test reaches the network or the user's cache); tests of the resolver build settings directly.
 *
 * @param endpoint the Hub's base URL, without a trailing slash
 * @param token    the bearer token, or null
 * @param cacheDir the hub cache folder (holding {@code models--org--name})
 * @param offline  true: never use the network
 */
public record HubSettings(String endpoint, String token, Path cacheDir, boolean offline) {
    public static final String DEFAULT_ENDPOINT = "https://huggingface.co";
    static final String PROPERTY_PREFIX = "shrink.hub.env.";
    private static final Set<String> TRUE = Set.of("1", "ON", "YES", "TRUE");

    public HubSettings {
        endpoint = stripSlashes(endpoint == null || endpoint.isBlank() ? DEFAULT_ENDPOINT : endpoint.trim());
        token = token == null || token.isBlank() ? null : token.trim();
    }

    /** The process environment, each variable overridable by the system property {@code shrink.hub.env.NAME}. */
    public static HubSettings fromEnvironment() {
        Map<String, String> env = new HashMap<>(System.getenv());
        for (String name : System.getProperties().stringPropertyNames()) {
            if (name.startsWith(PROPERTY_PREFIX)) {
                env.put(name.substring(PROPERTY_PREFIX.length()), System.getProperty(name));
            }
        }
        return from(env, Path.of(System.getProperty("user.home")));
    }

    /** Settings from these variables (empty values count as unset), as huggingface_hub reads them. */
    public static HubSettings from(Map<String, String> env, Path home) {
        Path hfHome = path(get(env, "HF_HOME"));
        if (hfHome == null) {
            Path xdg = path(get(env, "XDG_CACHE_HOME"));
            hfHome = (xdg != null ? xdg : home.resolve(".cache")).resolve("huggingface");
        }
        Path cache = path(get(env, "HF_HUB_CACHE"));
        if (cache == null) {
            cache = path(get(env, "HUGGINGFACE_HUB_CACHE"));
        }
        if (cache == null) {
            cache = hfHome.resolve("hub");
        }
        String token = get(env, "HF_TOKEN");
        if (token == null) {
            token = get(env, "HUGGING_FACE_HUB_TOKEN");
        }
        if (token == null) {
            Path tokenFile = path(get(env, "HF_TOKEN_PATH"));
            token = readToken(tokenFile != null ? tokenFile : hfHome.resolve("token"));
        }
        boolean offline = isTrue(get(env, "HF_HUB_OFFLINE")) || isTrue(get(env, "TRANSFORMERS_OFFLINE"));
        return new HubSettings(get(env, "HF_ENDPOINT"), token, cache, offline);
    }

    private static String get(Map<String, String> env, String name) {
        String v = env.get(name);
        return v == null || v.isBlank() ? null : v;
    }

    private static Path path(String s) {
        return s == null ? null : Path.of(s.startsWith("~/") ? System.getProperty("user.home") + s.substring(1) : s);
    }

    private static boolean isTrue(String v) {
        return v != null && TRUE.contains(v.trim().toUpperCase(Locale.ROOT));
    }

    private static String readToken(Path file) {
        try {
            return Files.isRegularFile(file) ? Files.readString(file).trim() : null;
        } catch (IOException | RuntimeException e) {
            return null; // an unreadable token file is as good as none: the Hub answers 401 and the error says what to do
        }
    }

    private static String stripSlashes(String s) {
        int end = s.length();
        while (end > 0 && s.charAt(end - 1) == '/') {
            end--;
        }
        return s.substring(0, end);
    }

    /** Without the token (records print every field). */
    @Override
    public String toString() {
        return "HubSettings[endpoint=" + endpoint + ", token=" + (token == null ? "none" : "set") + ", cacheDir="
                + cacheDir + ", offline=" + offline + "]";
    }
}
