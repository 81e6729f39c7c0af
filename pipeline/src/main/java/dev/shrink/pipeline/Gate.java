package dev.shrink.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The regression gate of CI: compares each result of a new report with the result of the same name
 * in an old report.json, metric by metric, against limits. A limit is relative ("1%": of the old
 * value) or absolute ("0.5": in the metric's unit: perplexity points, bytes, tokens/s, nats).
 * Checked, when given: perplexity per set (higher is worse; only where seqlen and windows match),
 * size of the weight files (larger is worse), decode tokens/s (lower is worse), KL (higher is
 * worse). A result missing from either report, or a perplexity measured with another protocol, is
 * noted and not failed. Both reports are read as JSON trees, so an old report of another version
 * works as long as it has these fields.
 *
 * <p>Perplexity is judged against its noise too (pipeline/COMPARE.md, "Reports and gate"): a set
 * fails only when its perplexity exceeds the limit AND the rise in mean NLL, log(new / old), exceeds
 * 1.96 × the standard error of that difference. Where both reports hold the same windows' NLLs
 * ({@code window_nll}, same count and text), the se is the paired one (the standard error of the
 * per-window differences); otherwise the two results' {@code nll_se} are combined as independent,
 * √(se_new² + se_old²). A rise over the limit but within the noise passes with a note; where either
 * report has no se (an older report), the limit alone decides and the line says so.
 */
public final class Gate {
    private Gate() {
    }

    /** A limit: {@code value} percent of the old value when relative, else in the metric's unit. */
    public record Limit(double value, boolean relative) {
        /** Parses "1%", "0.5%" or "0.02"; {@code option} names it in errors. */
        public static Limit parse(String option, String text) {
            String t = text.strip();
            boolean rel = t.endsWith("%");
            String num = rel ? t.substring(0, t.length() - 1).strip() : t;
            double v;
            try {
                v = Double.parseDouble(num);
            } catch (NumberFormatException e) {
                throw new ShrinkException(option + " must be a percentage like 1% or a number, got '" + text + "'");
            }
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new ShrinkException(option + " must be ≥ 0, got '" + text + "'");
            }
            return new Limit(v, rel);
        }

        /** The largest allowed value (or, with {@code down}, the smallest) given the old one. */
        double bound(double old, boolean down) {
            double d = relative ? Math.abs(old) * value / 100 : value;
            return down ? old - d : old + d;
        }

        /** "1%" or "0.5": the limit without its sign. */
        String amount() {
            return text(false).substring(1);
        }

        String text(boolean down) {
            String v = value == Math.rint(value) ? String.format(Locale.ROOT, "%.0f", value) : String.valueOf(value);
            return (down ? "-" : "+") + v + (relative ? "%" : "");
        }
    }

    /** The limits to check; null ones are not checked. */
    public record Limits(Limit perplexity, Limit size, Limit speed, Limit kl) {
        public boolean any() {
            return perplexity != null || size != null || speed != null || kl != null;
        }

        /** "perplexity +1%", "size +5%", "decode speed -20%", "KL +0.001": the limits checked. */
        public List<String> describe() {
            List<String> l = new ArrayList<>();
            if (perplexity != null) {
                l.add("perplexity " + perplexity.text(false));
            }
            if (size != null) {
                l.add("size " + size.text(false));
            }
            if (speed != null) {
                l.add("decode speed " + speed.text(true));
            }
            if (kl != null) {
                l.add("KL " + kl.text(false));
            }
            return l;
        }
    }

    /**
     * @param failures one line per failing metric
     * @param notes    results or metrics not compared, and why
     * @param compared metrics compared
     */
    public record Outcome(List<String> failures, List<String> notes, int compared) {
        public boolean passed() {
            return failures.isEmpty();
        }

        /** The verdict as the reports hold it. */
        public CompareReport.GateVerdict verdict(String baseline, Limits limits) {
            return new CompareReport.GateVerdict(baseline, limits.describe(), passed(), compared, failures, notes);
        }
    }

    public static Outcome check(JsonNode current, JsonNode old, Limits limits) {
        Map<String, JsonNode> before = new LinkedHashMap<>();
        for (JsonNode r : old.path("results")) {
            before.put(r.path("name").asText(), r);
        }
        List<String> failures = new ArrayList<>(), notes = new ArrayList<>();
        int compared = 0;
        for (JsonNode now : current.path("results")) {
            String name = now.path("name").asText();
            JsonNode was = before.remove(name);
            if (!now.path("error").isNull() && !now.path("error").isMissingNode()) {
                notes.add(name + ": failed in this run, not compared (" + now.path("error").asText() + ")");
                continue;
            }
            if (was == null) {
                notes.add(name + ": not in the old report (new result), not compared");
                continue;
            }
            if (!was.path("error").isNull() && !was.path("error").isMissingNode()) {
                notes.add(name + ": failed in the old report, not compared");
                continue;
            }
            JsonNode m = now.path("measures"), o = was.path("measures");
            if (limits.perplexity() != null) {
                Map<String, JsonNode> oldSets = new LinkedHashMap<>();
                o.path("perplexity").forEach(p -> oldSets.put(p.path("dataset").asText(), p));
                for (JsonNode p : m.path("perplexity")) {
                    String set = p.path("dataset").asText();
                    JsonNode q = oldSets.get(set);
                    if (q == null) {
                        notes.add(name + " " + set + ": no perplexity on it in the old report, not compared");
                        continue;
                    }
                    if (p.path("seqlen").asInt() != q.path("seqlen").asInt() || p.path("windows").asInt() != q.path("windows").asInt()) {
                        notes.add(String.format(Locale.ROOT, "%s %s: not compared: seqlen %d × %d windows now, %d × %d in the old report",
                                name, set, p.path("seqlen").asInt(), p.path("windows").asInt(), q.path("seqlen").asInt(),
                                q.path("windows").asInt()));
                        continue;
                    }
                    compared++;
                    double nv = p.path("ppl").asDouble(), ov = q.path("ppl").asDouble();
                    Limit lim = limits.perplexity();
                    if (nv > lim.bound(ov, false)) {
                        String line = String.format(Locale.ROOT, "%s %s perplexity %.2f > %.2f %s (old)", name, set, nv, ov,
                                lim.text(false));
                        Noise noise = noise(p, q);
                        if (noise == null) {
                            failures.add(line + ": exceeds the " + lim.amount() + " threshold (threshold alone: "
                                    + (q.path("nll_se").isNumber() ? "this" : "the old") + " report has no standard error)");
                        } else if (Math.log(nv / ov) > Z * noise.se()) {
                            failures.add(line + ": exceeds the " + lim.amount() + " threshold and the noise (" + noise.text() + ")");
                        } else {
                            notes.add(line + " but within noise (" + noise.text() + "), not failed");
                        }
                    }
                }
            }
            if (limits.size() != null && has(m, "size", "weight_bytes") && has(o, "size", "weight_bytes")) {
                compared++;
                double nv = m.path("size").path("weight_bytes").asDouble(), ov = o.path("size").path("weight_bytes").asDouble();
                if (nv > limits.size().bound(ov, false)) {
                    failures.add(String.format(Locale.ROOT, "%s size %.2f MiB > %.2f MiB %s (old)", name, nv / 1048576,
                            ov / 1048576, limits.size().text(false)));
                }
            }
            if (limits.speed() != null && has(m, "speed", "decode_tokens_per_second") && has(o, "speed", "decode_tokens_per_second")) {
                compared++;
                double nv = m.path("speed").path("decode_tokens_per_second").asDouble();
                double ov = o.path("speed").path("decode_tokens_per_second").asDouble();
                if (nv < limits.speed().bound(ov, true)) {
                    failures.add(String.format(Locale.ROOT, "%s decode speed %.1f tok/s < %.1f tok/s %s (old)", name, nv, ov,
                            limits.speed().text(true)));
                }
            }
            if (limits.kl() != null) {
                if (has(m, "kl", "mean") && has(o, "kl", "mean")) {
                    compared++;
                    double nv = m.path("kl").path("mean").asDouble(), ov = o.path("kl").path("mean").asDouble();
                    if (nv > limits.kl().bound(ov, false)) {
                        failures.add(String.format(Locale.ROOT, "%s %s KL %.5f > %.5f %s (old)", name,
                                m.path("kl").path("dataset").asText(), nv, ov, limits.kl().text(false)));
                    }
                } else {
                    notes.add(name + ": KL missing in one of the reports, not compared");
                }
            }
        }
        for (String gone : before.keySet()) {
            notes.add(gone + ": in the old report only (not run now), not compared");
        }
        return new Outcome(failures, notes, compared);
    }

    /** z of the two-sided 95% level: a rise beyond Z standard errors is taken as real. */
    static final double Z = dev.shrink.eval.PplResult.Z95;

    /**
     * The standard error of log(new ppl / old ppl), and how it was found.
     *
     * @param se     nats per prediction
     * @param paired whether from per-window differences (else independent se's combined)
     */
    record Noise(double se, boolean paired, int windows) {
        /** "±0.40%, paired over 20 windows": the 95% band relative to the old perplexity. */
        String text() {
            return String.format(Locale.ROOT, "±%.2f%%, %s", 100 * Math.expm1(Z * se),
                    paired ? "paired over " + windows + " windows" : "independent se's combined");
        }
    }

    /** The noise of the difference of two perplexity entries, or null when either lacks a standard error. */
    static Noise noise(JsonNode now, JsonNode old) {
        JsonNode a = now.path("window_nll"), b = old.path("window_nll");
        int n = a.size();
        if (a.isArray() && b.isArray() && n >= 2 && b.size() == n && n == now.path("windows").asInt()
                && now.path("tokens").asLong() == old.path("tokens").asLong()) {
            double[] d = new double[n];
            for (int i = 0; i < n; i++) {
                d[i] = a.get(i).asDouble() - b.get(i).asDouble();
            }
            return new Noise(dev.shrink.eval.PplResult.standardError(d), true, n);
        }
        JsonNode sa = now.path("nll_se"), sb = old.path("nll_se");
        if (sa.isNumber() && sb.isNumber()) {
            return new Noise(Math.hypot(sa.asDouble(), sb.asDouble()), false, n);
        }
        return null;
    }

    private static boolean has(JsonNode measures, String a, String b) {
        JsonNode n = measures.path(a).path(b);
        return n.isNumber();
    }
}
