package dev.shrink.pipeline;

import dev.shrink.eval.PplResult;
import dev.shrink.pipeline.CompareReport.Row;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The three report files of a compare, written atomically into the work dir: {@code report.json}
 * (the {@link CompareReport} record, for machines and the gate), {@code report.md} (tables for a
 * pull request) and {@code report.html} ({@link ReportHtml}: one self-contained page with plots).
 */
public final class ReportFiles {
    private ReportFiles() {
    }

    /** What the columns mean; in report.json and under the tables. */
    static final Map<String, String> DEFINITIONS = definitions();

    private static Map<String, String> definitions() {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("size", "bytes of the folder's *.safetensors files (MiB = 2^20 bytes)");
        d.put("bits/weight", "8 x those bytes / the baseline's parameters (every tensor: embeddings, norms, linears)");
        d.put("linear bits/weight", "8 x bytes of the decoder linears' tensors (qweight, qzeros, scales, g_idx, bias) "
                + "/ their parameters in the baseline");
        d.put("perplexity", "exp(mean NLL) by the protocol of shared/golden/README.md (BOS once, non-overlapping windows, "
                + "tail dropped) on the first max_windows windows; delta % against the baseline. ±: the 95% interval "
                + "exp(mean NLL ± 1.96 se) as a share of ppl, se = the standard error of the mean NLL over windows "
                + "(their standard deviation / √windows); the interval's ends are ppl_low and ppl_high in report.json");
        d.put("KL", "mean over held-out positions of KL(baseline || result) of the next-token distributions, nats/token");
        d.put("prefill", "prompt tokens / seconds of one forward of the prompt at batch 1 (median of the repeats; "
                + "the spread min-max in report.json)");
        d.put("decode", "greedy tokens / seconds of one-token forwards with the KV cache at batch 1 (median; in brackets "
                + "the slowest and fastest of the repeats)");
        d.put("model heap", "Java heap the loaded model holds (live heap after a full GC with the model loaded, minus "
                + "before): exact and repeatable. Shrink's CPU backends dequantize packed weights to float32 when loading, "
                + "so a quantized model takes as much as the baseline here");
        d.put("peak RSS", "the whole process's peak resident memory (Linux VmHWM, reset before loading) through loading "
                + "the model and the batch-1 speed and generation runs; it includes the JVM and the heap that earlier "
                + "work left committed, so it is an upper bound that compares poorly between rows");
        d.put("compress", "wall seconds of the pipeline's stages (a cached stage counts the time it took when it ran)");
        return d;
    }

    public static void writeAll(Path workDir, CompareReport report) {
        ReportJson.writeAtomically(workDir.resolve("report.json"), ReportJson.write(report) + "\n");
        ReportJson.writeAtomically(workDir.resolve("report.md"), markdown(report));
        ReportJson.writeAtomically(workDir.resolve("report.html"), ReportHtml.html(report));
    }

    /** One line of a result's numbers, for the console. */
    static String summary(Measures m) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "%s, %.2f bits/weight", mib(m.size().weightBytes()), m.size().bitsPerWeight()));
        for (PplResult p : m.perplexity()) {
            sb.append(String.format(Locale.ROOT, "; %s ppl %.4f%s (%d×%d)", p.dataset(), p.ppl(),
                    p.nllSe() == null ? "" : " " + p.noise(), p.windows(), p.seqlen()));
        }
        if (m.kl() != null) {
            sb.append(String.format(Locale.ROOT, "; KL %.5f", m.kl().mean()));
        }
        sb.append(String.format(Locale.ROOT, "; prefill %.0f tok/s, decode %.1f tok/s", m.speed().prefillTokensPerSecond(),
                m.speed().decodeTokensPerSecond()));
        if (m.speed().path() != null && !m.speed().path().equals(dev.shrink.eval.SpeedResult.HOST)) {
            sb.append(" (").append(m.speed().path()).append(")");
        }
        if (m.estimate() != null) {
            sb.append("; ").append(m.estimate().versus(m.speed().decodeTokensPerSecond()));
        }
        sb.append(m.memory().deviceBytes() != null ? "; model on the GPU " + mib(m.memory().deviceBytes())
                : "; model heap " + mib(m.memory().modelHeapBytes()));
        return sb.toString();
    }

    static String mib(long bytes) {
        return String.format(Locale.ROOT, "%.2f MiB", bytes / 1048576.0);
    }

    /** The perplexity sets, in the order of the first successful row. */
    static List<String> datasets(CompareReport r) {
        for (Row row : r.results()) {
            if (row.ok()) {
                return row.measures().perplexity().stream().map(PplResult::dataset).toList();
            }
        }
        return List.of();
    }

    static Row baselineRow(CompareReport r) {
        for (Row row : r.results()) {
            if (row.name().equals(Recipe.BASELINE) && row.ok()) {
                return row;
            }
        }
        return null;
    }

    /** "+1.23%" of value against base, or "" without a base. */
    static String delta(double value, Double base) {
        if (base == null || base == 0) {
            return "";
        }
        return String.format(Locale.ROOT, "%+.2f%%", 100 * (value / base - 1));
    }

    /** The table's cells: one list per row, the header first. */
    static List<List<String>> table(CompareReport r) {
        List<String> sets = datasets(r);
        Row base = baselineRow(r);
        List<List<String>> rows = new ArrayList<>();
        List<String> head = new ArrayList<>(List.of("result", "size", "bits/weight", "linear bits/weight"));
        for (String s : sets) {
            head.add("ppl " + s);
        }
        head.addAll(List.of("KL", "prefill tok/s", "decode tok/s", "model heap", "peak RSS", "compress"));
        rows.add(head);
        for (Row row : r.results()) {
            List<String> cells = new ArrayList<>();
            cells.add(row.name());
            if (!row.ok()) {
                cells.add("failed: " + row.error());
                rows.add(cells);
                continue;
            }
            Measures m = row.measures();
            cells.add(mib(m.size().weightBytes()));
            cells.add(String.format(Locale.ROOT, "%.2f", m.size().bitsPerWeight()));
            cells.add(String.format(Locale.ROOT, "%.2f", m.size().linearBitsPerWeight()));
            for (String s : sets) {
                PplResult p = m.ppl(s);
                if (p == null) {
                    cells.add("–");
                    continue;
                }
                Double b = base == null || base.measures().ppl(s) == null ? null : base.measures().ppl(s).ppl();
                String d = row == base ? "" : delta(p.ppl(), b);
                cells.add(String.format(Locale.ROOT, "%.4f", p.ppl()) + (p.nllSe() == null ? "" : " " + p.noise())
                        + (d.isEmpty() ? "" : " (" + d + ")"));
            }
            cells.add(m.kl() == null ? "–" : String.format(Locale.ROOT, "%.5f", m.kl().mean()));
            cells.add(String.format(Locale.ROOT, "%.0f", m.speed().prefillTokensPerSecond()));
            cells.add(decode(m.speed()) + (m.estimate() == null ? "" : String.format(Locale.ROOT, " (%.0f%% of est.)",
                    100 * m.speed().decodeTokensPerSecond() / m.estimate().decodeTokensPerSecond())));
            cells.add(m.memory().deviceBytes() != null
                    ? String.format(Locale.ROOT, "GPU %.1f MiB", m.memory().deviceBytes() / 1048576.0)
                    : String.format(Locale.ROOT, "%.1f MiB", m.memory().modelHeapBytes() / 1048576.0));
            cells.add(m.memory().peakRssBytes() == null ? "–"
                    : String.format(Locale.ROOT, "%.0f MiB", m.memory().peakRssBytes() / 1048576.0));
            cells.add(row.stages().isEmpty() ? "–" : String.format(Locale.ROOT, "%.1f s%s", row.compressSeconds(),
                    row.stagesCached() > 0 ? " (cached)" : ""));
            rows.add(cells);
        }
        return rows;
    }

    /** Decode tok/s, with the slowest and fastest repeat when there were several: "74.0 [69.0–79.0]". */
    static String decode(dev.shrink.eval.SpeedResult sp) {
        String med = String.format(Locale.ROOT, "%.1f", sp.decodeTokensPerSecond());
        return sp.repeats() < 2 ? med : med + String.format(Locale.ROOT, " [%.1f–%.1f]", sp.decodeMin(), sp.decodeMax());
    }

    /** The gate's lines: the verdict, then each failure and note; empty when no gate ran. */
    static List<String> gateLines(CompareReport r) {
        List<String> l = new ArrayList<>();
        var g = r.gate();
        if (g == null) {
            return l;
        }
        l.add("gate " + g.summary() + "; limits: " + String.join(", ", g.limits()));
        g.failures().forEach(f -> l.add("FAIL: " + f));
        g.notes().forEach(n -> l.add("note: " + n));
        return l;
    }

    /** The protocol line: seqlen, windows, tokens of each set; KL and speed settings; backend and machine. */
    static List<String> protocol(CompareReport r) {
        List<String> lines = new ArrayList<>();
        for (Row row : r.results()) {
            if (!row.ok()) {
                continue;
            }
            for (PplResult p : row.measures().perplexity()) {
                lines.add(String.format(Locale.ROOT, "perplexity %s: seqlen %d, %d of %d windows, %d predictions, %d tokens in text",
                        p.dataset(), p.seqlen(), p.windows(), p.windowsAvailable(), p.predictions(), p.tokens()));
            }
            var kl = row.measures().kl();
            if (kl != null) {
                lines.add(String.format(Locale.ROOT, "KL: %s, %d windows of %d tokens (%d positions)", kl.dataset(),
                        kl.windows(), kl.seqlen(), kl.positions()));
            }
            var sp = row.measures().speed();
            lines.add(String.format(Locale.ROOT, "speed: batch 1, prompt of %d tokens, %d decode steps, median of %d repeats "
                    + "after one warm-up; %s", sp.promptTokens(), sp.decodeTokens(), sp.repeats(), sp.path()));
            break;
        }
        if (r.settings() != null && r.settings().get("evaluation") instanceof Map<?, ?> e && e.get("kv_cache") != null) {
            lines.add("KV cache: " + e.get("kv_cache") + " (every row's perplexity, KL, speed and continuations; "
                    + "KL against the baseline with an fp16 cache; docs/KV_CACHE.md)");
        }
        var m = r.machine();
        lines.add(String.format(Locale.ROOT, "backend %s, %d threads; %s %s, %d cores, %d-bit vectors, Java %s, max heap %s; %s",
                m.backend(), m.threads(), m.os(), m.arch(), m.cores(), m.vectorBits(), m.java(), mib(m.maxHeapBytes()),
                r.tool()));
        return lines;
    }

    static String markdown(CompareReport r) {
        StringBuilder sb = new StringBuilder();
        sb.append("# shrink compare: ").append(Path.of(r.recipe()).getFileName()).append("\n\n");
        sb.append("Model `").append(r.model()).append("`, ").append(r.created()).append(".\n\n");
        if (r.command() != null) { // how to get this report again, and where to run it
            sb.append("Reproduce: `").append(r.command().replace("`", "'")).append("`")
                    .append(r.commandDir() == null || r.commandDir().equals(".") ? ""
                            : " (run in `" + r.commandDir() + "`, relative to this report's folder)")
                    .append("\n\n");
        }
        List<String> gate = gateLines(r);
        if (!gate.isEmpty()) {
            sb.append("**Gate ").append(mdCell(r.gate().summary())).append("**; limits: ")
                    .append(mdCell(String.join(", ", r.gate().limits()))).append("\n\n");
            for (String l : gate.subList(1, gate.size())) {
                sb.append("- ").append(mdCell(l)).append("\n");
            }
            sb.append(gate.size() > 1 ? "\n" : "");
        }
        List<List<String>> t = table(r);
        int cols = t.get(0).size();
        for (int i = 0; i < t.size(); i++) {
            List<String> row = new ArrayList<>(t.get(i));
            while (row.size() < cols) {
                row.add("");
            }
            sb.append("| ").append(String.join(" | ", row.stream().map(ReportFiles::mdCell).toList())).append(" |\n");
            if (i == 0) {
                sb.append("|").append(" --- |".repeat(cols)).append("\n");
            }
        }
        sb.append("\n");
        if (r.pareto().dataset() != null) {
            sb.append("Pareto front (").append(r.pareto().dataset()).append(" perplexity vs size): ")
                    .append(String.join(", ", r.pareto().sizeVsPerplexity())).append("  \n");
            sb.append("Pareto front (").append(r.pareto().dataset()).append(" perplexity vs decode speed): ")
                    .append(String.join(", ", r.pareto().speedVsPerplexity())).append("\n\n");
        }
        sb.append("## Pipelines\n\n");
        for (Row row : r.results()) {
            sb.append("- **").append(mdCell(row.name())).append("**: ")
                    .append(row.stages().isEmpty() ? "the input model, uncompressed" : mdCell(String.join(" → ", row.stages())))
                    .append(row.modelDir() == null ? "" : "; folder `" + row.modelDir() + "`")
                    .append("\n");
        }
        List<String> prompts = prompts(r);
        if (!prompts.isEmpty()) {
            sb.append("\n## Greedy continuations\n");
            for (int i = 0; i < prompts.size(); i++) {
                sb.append("\n**").append(mdCell(prompts.get(i))).append("**\n\n| result | continuation |\n| --- | --- |\n");
                for (Row row : r.results()) {
                    if (row.ok() && i < row.measures().continuations().size()) {
                        sb.append("| ").append(mdCell(row.name())).append(" | ")
                                .append(mdCell(row.measures().continuations().get(i).text())).append(" |\n");
                    }
                }
            }
        }
        sb.append("\n## Protocol\n\n");
        for (String l : protocol(r)) {
            sb.append("- ").append(mdCell(l)).append("\n");
        }
        sb.append("\n## Definitions\n\n");
        r.definitions().forEach((k, v) -> sb.append("- **").append(k).append("**: ").append(mdCell(v)).append("\n"));
        return sb.toString();
    }

    static List<String> prompts(CompareReport r) {
        for (Row row : r.results()) {
            if (row.ok()) {
                return row.measures().continuations().stream().map(Measures.Continuation::prompt).toList();
            }
        }
        return List.of();
    }

    /** A table cell: one line, pipes escaped. */
    static String mdCell(String s) {
        return s.replace("\\", "\\\\").replace("<", "&lt;").replace("|", "\\|").replace("\r", " ").replace("\n", " ⏎ ");
    }
}
