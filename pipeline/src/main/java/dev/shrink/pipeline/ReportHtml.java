package dev.shrink.pipeline;

import dev.shrink.eval.PplResult;
import dev.shrink.pipeline.CompareReport.Row;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * report.html: one self-contained page (inline CSS, inline SVG drawn here; no script, no external
 * resource): perplexity vs size and perplexity vs decode speed with the Pareto front marked and
 * joined, the results table (front members starred), the pipelines, the continuations side by
 * side, the protocol and the definitions. The plots draw perplexity's 95% interval and decode
 * speed's min–max as error bars; size and speed axes start at 0, perplexity's at a round tick; labels
 * are placed where they overlap no marker, bar or other label (with a leader line when moved away).
 */
final class ReportHtml {
    private ReportHtml() {
    }

    private static final String FRONT = "#d9480f";
    private static final String OTHER = "#495057";

    static String html(CompareReport r) {
        String title = "shrink compare: " + Path.of(r.recipe()).getFileName();
        StringBuilder sb = new StringBuilder(16_384);
        sb.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>").append(esc(title))
                .append("</title>\n<style>\n").append(CSS).append("</style>\n</head>\n<body>\n");
        sb.append("<h1>").append(esc(title)).append("</h1>\n");
        sb.append("<p class=\"sub\">model <code>").append(esc(r.model())).append("</code> · ").append(esc(r.created()))
                .append(" · backend ").append(esc(r.machine().backend())).append(", ").append(r.machine().threads())
                .append(" threads · ").append(esc(r.tool())).append("</p>\n");
        if (r.command() != null) {
            sb.append("<p class=\"sub\">reproduce: <code>").append(esc(r.command())).append("</code>")
                    .append(r.commandDir() == null || r.commandDir().equals(".") ? ""
                            : " (run in <code>" + esc(r.commandDir()) + "</code>, relative to this report's folder)")
                    .append("</p>\n");
        }
        if (r.gate() != null) {
            var g = r.gate();
            sb.append("<div class=\"gate ").append(g.passed() ? "pass" : "fail").append("\"><b>gate ").append(esc(g.summary()))
                    .append("</b>; limits: ").append(esc(String.join(", ", g.limits())));
            if (!g.failures().isEmpty() || !g.notes().isEmpty()) {
                sb.append("<ul>");
                g.failures().forEach(f -> sb.append("<li class=\"f\">FAIL: ").append(esc(f)).append("</li>"));
                g.notes().forEach(n -> sb.append("<li>note: ").append(esc(n)).append("</li>"));
                sb.append("</ul>");
            }
            sb.append("</div>\n");
        }
        String set = r.pareto().dataset();
        List<Row> ok = r.results().stream().filter(Row::ok).filter(x -> set != null && x.measures().ppl(set) != null).toList();
        if (!ok.isEmpty()) {
            sb.append("<div class=\"plots\">\n");
            ToDoubleFunction<Row> size = x -> x.measures().size().weightBytes() / 1048576.0;
            sb.append(figure(plot(ok, set, r.pareto().sizeVsPerplexity(), "size (MiB of weight files)", size, size, size, "%.1f"),
                    set + " perplexity (bars: 95% interval) vs size; lower left is better"));
            sb.append(figure(plot(ok, set, r.pareto().speedVsPerplexity(), "decode tokens/s (batch 1)",
                    x -> x.measures().speed().decodeTokensPerSecond(),
                    x -> Math.min(x.measures().speed().decodeMin(), x.measures().speed().decodeTokensPerSecond()),
                    x -> Math.max(x.measures().speed().decodeMax(), x.measures().speed().decodeTokensPerSecond()), "%.0f"),
                    set + " perplexity vs decode speed (bars: min–max of the repeats); lower right is better"));
            sb.append("</div>\n");
            sb.append("<p class=\"front\"><span class=\"dot\"></span> Pareto front (no other result is better on both axes) · "
                    + "size: <b>").append(esc(String.join(", ", r.pareto().sizeVsPerplexity()))).append("</b> · speed: <b>")
                    .append(esc(String.join(", ", r.pareto().speedVsPerplexity()))).append("</b></p>\n");
        }
        sb.append("<h2>Results</h2>\n<div class=\"scroll\"><table>\n");
        List<List<String>> t = ReportFiles.table(r);
        int cols = t.get(0).size();
        for (int i = 0; i < t.size(); i++) {
            List<String> row = t.get(i);
            String tag = i == 0 ? "th" : "td";
            boolean failed = i > 0 && !r.results().get(i - 1).ok();
            sb.append(failed ? "<tr class=\"failed\">" : "<tr>");
            for (int c = 0; c < row.size(); c++) {
                String cell = esc(row.get(c));
                if (i > 0 && c == 0 && onFront(r, row.get(0))) {
                    cell += " <span class=\"star\" title=\"on a Pareto front\">★</span>";
                }
                String span = failed && c == row.size() - 1 && row.size() < cols ? " colspan=\"" + (cols - c) + "\"" : "";
                sb.append('<').append(tag).append(span).append(c == 0 || failed ? " class=\"l\"" : "").append('>')
                        .append(cell).append("</").append(tag).append('>');
            }
            sb.append("</tr>\n");
        }
        sb.append("</table></div>\n");
        sb.append("<h2>Pipelines</h2>\n<ul>\n");
        for (Row row : r.results()) {
            sb.append("<li><b>").append(esc(row.name())).append("</b>: ")
                    .append(row.stages().isEmpty() ? "the input model, uncompressed"
                            : "<code>" + esc(String.join(" → ", row.stages())) + "</code>")
                    .append(row.modelDir() == null ? "" : "; folder <code>" + esc(row.modelDir()) + "</code>")
                    .append("</li>\n");
        }
        sb.append("</ul>\n");
        List<String> prompts = ReportFiles.prompts(r);
        if (!prompts.isEmpty()) {
            sb.append("<h2>Greedy continuations</h2>\n");
            for (int i = 0; i < prompts.size(); i++) {
                sb.append("<h3>").append(esc(prompts.get(i))).append("</h3>\n<div class=\"cards\">\n");
                for (Row row : r.results()) {
                    if (row.ok() && i < row.measures().continuations().size()) {
                        sb.append("<div class=\"card\"><div class=\"name\">").append(esc(row.name()))
                                .append("</div><div class=\"text\"><span class=\"prompt\">").append(esc(prompts.get(i)))
                                .append("</span>").append(esc(row.measures().continuations().get(i).text()))
                                .append("</div></div>\n");
                    }
                }
                sb.append("</div>\n");
            }
        }
        sb.append("<h2>Protocol</h2>\n<ul>\n");
        for (String l : ReportFiles.protocol(r)) {
            sb.append("<li>").append(esc(l)).append("</li>\n");
        }
        sb.append("</ul>\n<h2>Definitions</h2>\n<dl>\n");
        r.definitions().forEach((k, v) -> sb.append("<dt>").append(esc(k)).append("</dt><dd>").append(esc(v)).append("</dd>\n"));
        sb.append("</dl>\n</body>\n</html>\n");
        return sb.toString();
    }

    private static boolean onFront(CompareReport r, String name) {
        return r.pareto().sizeVsPerplexity().contains(name) || r.pareto().speedVsPerplexity().contains(name);
    }

    private static String figure(String svg, String caption) {
        return "<figure>" + svg + "<figcaption>" + esc(caption) + "</figcaption></figure>\n";
    }

    private static final int W = 540, H = 340, ML = 62, MR = 24, MT = 18, MB = 48;

    /** An axis-aligned box, for label placement. */
    record Box(double x0, double y0, double x1, double y1) {
        boolean overlaps(Box o) {
            return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1;
        }

        boolean inside(Box o) {
            return x0 >= o.x0 && x1 <= o.x1 && y0 >= o.y0 && y1 <= o.y1;
        }
    }

    /** Where a label goes: its box, the text's anchor point (start, baseline), and whether a leader line joins it. */
    record Label(Box box, double tx, double ty, boolean leader) {
    }

    static final double CHAR_W = 7, LABEL_H = 14, MARK_R = 5.5;

    /**
     * Places one label per marker so that no label overlaps a marker, an obstacle (error bars) or an
     * earlier label, inside {@code area}: first beside the marker (right, left, above, below, the
     * diagonals), then farther away in steps of a line (joined by a leader line). Where nothing
     * is free (a crowded plot), the last place tried is taken.
     */
    static List<Label> placeLabels(double[] px, double[] py, String[] names, List<Box> obstacles, Box area) {
        List<Box> taken = new ArrayList<>(obstacles);
        for (int i = 0; i < px.length; i++) {
            taken.add(new Box(px[i] - MARK_R - 1, py[i] - MARK_R - 1, px[i] + MARK_R + 1, py[i] + MARK_R + 1));
        }
        List<Label> out = new ArrayList<>();
        for (int i = 0; i < px.length; i++) {
            double w = CHAR_W * names[i].length(), x = px[i], y = py[i];
            List<Label> tries = new ArrayList<>();
            double g = MARK_R + 3; // gap from the marker's centre
            tries.add(at(x + g, y - LABEL_H / 2, w, false));
            tries.add(at(x - g - w, y - LABEL_H / 2, w, false));
            tries.add(at(x - w / 2, y - g - LABEL_H, w, false));
            tries.add(at(x - w / 2, y + g, w, false));
            tries.add(at(x + g - 2, y - g - LABEL_H + 2, w, false));
            tries.add(at(x + g - 2, y + g - 2, w, false));
            tries.add(at(x - g + 2 - w, y - g - LABEL_H + 2, w, false));
            tries.add(at(x - g + 2 - w, y + g - 2, w, false));
            for (int k = 1; k <= 12; k++) {
                double d = k * (LABEL_H + 2);
                for (double dy : new double[] {-d, d}) {
                    tries.add(at(x + g + 10, y - LABEL_H / 2 + dy, w, true));
                    tries.add(at(x - g - 10 - w, y - LABEL_H / 2 + dy, w, true));
                }
            }
            Label chosen = null;
            for (Label l : tries) {
                if (l.box().inside(area) && taken.stream().noneMatch(b -> b.overlaps(l.box()))) {
                    chosen = l;
                    break;
                }
            }
            if (chosen == null) { // nowhere free: right of the marker, clamped into the plot
                Label l = tries.get(0);
                double dx = Math.min(0, area.x1() - l.box().x1()), dy = Math.max(0, area.y0() - l.box().y0());
                chosen = at(l.box().x0() + dx, l.box().y0() + dy, w, false);
            }
            taken.add(chosen.box());
            out.add(chosen);
        }
        return out;
    }

    private static Label at(double x0, double y0, double w, boolean leader) {
        return new Label(new Box(x0, y0, x0 + w, y0 + LABEL_H), x0, y0 + LABEL_H - 3, leader);
    }

    /**
     * A scatter plot of perplexity (y, with its 95% interval as a vertical bar) against {@code x}
     * (with [xLo, xHi] as a horizontal bar where they differ), the front's points filled and joined
     * in x order. The x axis starts at 0; the y axis spans round ticks around the intervals.
     */
    static String plot(List<Row> rows, String set, List<String> front, String xLabel, ToDoubleFunction<Row> x,
                       ToDoubleFunction<Row> xLo, ToDoubleFunction<Row> xHi, String xFmt) {
        int n = rows.size();
        double[] xs = new double[n], xl = new double[n], xh = new double[n], ys = new double[n], yl = new double[n], yh = new double[n];
        for (int i = 0; i < n; i++) {
            xs[i] = x.applyAsDouble(rows.get(i));
            xl[i] = xLo.applyAsDouble(rows.get(i));
            xh[i] = xHi.applyAsDouble(rows.get(i));
            PplResult p = rows.get(i).measures().ppl(set);
            ys[i] = p.ppl();
            yl[i] = p.pplLow() != null ? p.pplLow() : p.ppl();
            yh[i] = p.pplHigh() != null ? p.pplHigh() : p.ppl();
        }
        double[] xr = niceRange(0, range(xh)[1]), yr = niceRange(range(yl)[0], range(yh)[1]);
        double[] xt = ticks(xr[0], xr[1]), yt = ticks(yr[0], yr[1]);
        double x0 = xr[0], x1 = xr[1], y0 = yr[0], y1 = yr[1];
        int pw = W - ML - MR, ph = H - MT - MB;
        java.util.function.DoubleUnaryOperator sx = v -> ML + (v - x0) / (x1 - x0) * pw;
        java.util.function.DoubleUnaryOperator sy = v -> MT + ph - (v - y0) / (y1 - y0) * ph;
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                + "role=\"img\" font-family=\"system-ui, sans-serif\" font-size=\"12\">", W, H, W, H));
        s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#ced4da\"/>",
                ML, MT, pw, ph));
        for (double v : xt) {
            double px = sx.applyAsDouble(v);
            s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#f1f3f5\"/>", px, MT, px, MT + ph));
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#495057\">%s</text>",
                    px, MT + ph + 16, esc(String.format(Locale.ROOT, tickFormat(xFmt, xt), v))));
        }
        String yFmt = tickFormat(yt.length > 1 && Math.abs(yt[1] - yt[0]) >= 1 ? "%.0f" : "%.1f", yt);
        for (double v : yt) {
            double py = sy.applyAsDouble(v);
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#f1f3f5\"/>", ML, py, ML + pw, py));
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#495057\">%s</text>",
                    ML - 6, py + 4, esc(String.format(Locale.ROOT, yFmt, v))));
        }
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#212529\">%s</text>",
                ML + pw / 2, H - 10, esc(xLabel)));
        s.append(String.format(Locale.ROOT, "<text x=\"14\" y=\"%d\" text-anchor=\"middle\" fill=\"#212529\" "
                + "transform=\"rotate(-90 14 %d)\">%s perplexity</text>", MT + ph / 2, MT + ph / 2, esc(set)));
        double[] px = new double[n], py = new double[n];
        String[] names = new String[n];
        List<Box> bars = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            px[i] = sx.applyAsDouble(xs[i]);
            py[i] = sy.applyAsDouble(ys[i]);
            names[i] = rows.get(i).name();
        }
        // the front, joined in x order
        List<double[]> fp = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (front.contains(names[i])) {
                fp.add(new double[] {px[i], py[i]});
            }
        }
        fp.sort((a, b) -> Double.compare(a[0], b[0]));
        if (fp.size() > 1) {
            StringBuilder pts = new StringBuilder();
            for (double[] p : fp) {
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", p[0], p[1]));
            }
            s.append("<polyline points=\"").append(pts.toString().strip()).append("\" fill=\"none\" stroke=\"").append(FRONT)
                    .append("\" stroke-width=\"1.5\" stroke-dasharray=\"5 4\"/>");
        }
        // error bars: perplexity's interval (vertical), x's spread (horizontal), with caps
        for (int i = 0; i < n; i++) {
            String c = front.contains(names[i]) ? FRONT : OTHER;
            double top = sy.applyAsDouble(yh[i]), bottom = sy.applyAsDouble(yl[i]);
            if (bottom - top > 1) {
                s.append(String.format(Locale.ROOT, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"%s\" "
                        + "stroke-width=\"1.2\" fill=\"none\" opacity=\"0.8\"/>", px[i], top, bottom, px[i] - 4, top, px[i] + 4,
                        px[i] - 4, bottom, px[i] + 4, c));
                bars.add(new Box(px[i] - 4.5, top - 1, px[i] + 4.5, bottom + 1));
            }
            double left = sx.applyAsDouble(xl[i]), right = sx.applyAsDouble(xh[i]);
            if (right - left > 1) {
                s.append(String.format(Locale.ROOT, "<path d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f\" stroke=\"%s\" "
                        + "stroke-width=\"1.2\" fill=\"none\" opacity=\"0.8\"/>", left, py[i], right, left, py[i] - 4, py[i] + 4,
                        right, py[i] - 4, py[i] + 4, c));
                bars.add(new Box(left - 1, py[i] - 4.5, right + 1, py[i] + 4.5));
            }
        }
        for (int i = 0; i < n; i++) {
            boolean on = front.contains(names[i]);
            PplResult p = rows.get(i).measures().ppl(set);
            s.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" stroke=\"%s\" stroke-width=\"2\">"
                    + "<title>%s: %s perplexity %.4f%s</title></circle>", px[i], py[i], MARK_R, on ? FRONT : "#fff", on ? FRONT : OTHER,
                    esc(names[i]), esc(set), ys[i], p.nllSe() == null ? "" : esc(String.format(Locale.ROOT,
                            " (95%%: %.4f–%.4f)", yl[i], yh[i]))));
        }
        List<Label> labels = placeLabels(px, py, names, bars, new Box(ML + 1, MT + 1, ML + pw - 1, MT + ph - 1));
        for (int i = 0; i < n; i++) {
            Label l = labels.get(i);
            boolean on = front.contains(names[i]);
            if (l.leader()) {
                double lx = l.box().x0() > px[i] ? l.box().x0() - 2 : l.box().x1() + 2, ly = (l.box().y0() + l.box().y1()) / 2;
                s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#adb5bd\" "
                        + "stroke-width=\"1\"/>", px[i], py[i], lx, ly));
            }
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\"%s>%s</text>", l.tx(), l.ty(),
                    on ? FRONT : "#212529", on ? " font-weight=\"600\"" : "", esc(names[i])));
        }
        s.append("</svg>");
        return s.toString();
    }

    /** [lo, hi] widened to the round ticks ({@link #ticks}'s step) at or beyond each end. */
    static double[] niceRange(double lo, double hi) {
        double raw = (hi - lo) / 5;
        double mag = Math.pow(10, Math.floor(Math.log10(raw)));
        double f = raw / mag;
        double step = (f < Math.sqrt(2) ? 1 : f < Math.sqrt(10) ? 2 : f < Math.sqrt(50) ? 5 : 10) * mag;
        return new double[] {Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step};
    }

    /**
     * [min, max] with 8% padding on each side. A span under 2% of the values (results of the same
     * size, say) is widened around its middle to 2%, so that equal values plot as equal.
     */
    static double[] range(double[] v) {
        double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY;
        for (double d : v) {
            lo = Math.min(lo, d);
            hi = Math.max(hi, d);
        }
        double span = hi - lo;
        double least = Math.max(Math.max(Math.abs(lo), Math.abs(hi)) * 0.02, 1e-3);
        if (span < least) {
            double mid = (lo + hi) / 2;
            lo = mid - least / 2;
            hi = mid + least / 2;
            span = least;
        }
        return new double[] {lo - 0.08 * span, hi + 0.08 * span};
    }

    /** {@code fmt}, or one with enough decimals that neighbouring ticks read differently. */
    static String tickFormat(String fmt, double[] ticks) {
        if (ticks.length < 2) {
            return fmt;
        }
        double step = Math.abs(ticks[1] - ticks[0]);
        int decimals = (int) Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
        String needed = "%." + decimals + "f";
        return String.format(Locale.ROOT, fmt, ticks[0]).equals(String.format(Locale.ROOT, fmt, ticks[1])) ? needed : fmt;
    }

    /** About five round values (1, 2 or 5 × 10^k apart) inside [lo, hi]. */
    static double[] ticks(double lo, double hi) {
        double raw = (hi - lo) / 5;
        double mag = Math.pow(10, Math.floor(Math.log10(raw)));
        double f = raw / mag;
        double step = (f < Math.sqrt(2) ? 1 : f < Math.sqrt(10) ? 2 : f < Math.sqrt(50) ? 5 : 10) * mag;
        long first = (long) Math.ceil(lo / step - 1e-9), last = (long) Math.floor(hi / step + 1e-9);
        double[] out = new double[(int) Math.max(0, last - first + 1)];
        for (int i = 0; i < out.length; i++) {
            out[i] = (first + i) * step;
        }
        return out;
    }

    static String esc(String s) {
        if (s == null) {
            return "";
        }
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '<' -> sb.append("&lt;");
                case '>' -> sb.append("&gt;");
                case '&' -> sb.append("&amp;");
                case '"' -> sb.append("&quot;");
                case '\'' -> sb.append("&#39;");
                default -> sb.append(c);
            }
        }
        return sb.toString();
    }

    private static final String CSS = """
            body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #212529;
                   max-width: 1200px; }
            h1 { font-size: 22px; margin: 0 0 4px; }
            h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dee2e6; padding-bottom: 4px; }
            h3 { font-size: 14px; margin: 16px 0 6px; font-weight: 600; }
            .sub { color: #6c757d; margin: 0 0 16px; font-size: 13px; }
            code { font-size: 12px; background: #f8f9fa; padding: 1px 4px; border-radius: 3px; }
            .plots { display: flex; flex-wrap: wrap; gap: 16px; }
            figure { margin: 0; border: 1px solid #dee2e6; border-radius: 6px; padding: 8px; background: #fff; }
            figcaption { font-size: 12px; color: #6c757d; text-align: center; margin-top: 2px; }
            .front { font-size: 13px; }
            .gate { font-size: 13px; border-radius: 6px; padding: 6px 10px; margin: 0 0 12px; }
            .gate ul { margin: 4px 0 0; padding-left: 20px; }
            .gate.pass { background: #ebfbee; border: 1px solid #b2f2bb; }
            .gate.fail { background: #fff5f5; border: 1px solid #ffc9c9; }
            .gate li.f { color: #c92a2a; }
            .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; background: #d9480f; }
            table { border-collapse: collapse; font-size: 13px; }
            .scroll { overflow-x: auto; }
            th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: right; white-space: nowrap; }
            th { background: #f1f3f5; }
            td.l, th.l { text-align: left; }
            tr.failed td { color: #c92a2a; white-space: normal; }
            .star { color: #d9480f; }
            .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 10px; }
            .card { border: 1px solid #dee2e6; border-radius: 6px; padding: 8px 10px; font-size: 13px; background: #fff; }
            .card .name { font-weight: 600; margin-bottom: 4px; }
            .card .text { white-space: pre-wrap; line-height: 1.4; }
            .card .prompt { color: #868e96; }
            dt { font-weight: 600; font-size: 13px; margin-top: 6px; }
            dd { margin: 0 0 0 16px; font-size: 13px; color: #495057; }
            ul { font-size: 13px; }
            """;
}
