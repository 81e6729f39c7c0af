package dev.shrink.distill;

import java.util.List;
import java.util.Locale;

/**
 * The loss curve of a distillation run as a self-contained SVG (no scripts, no external fonts):
 * the loss of every step as a thin line, its moving average over {@value #SMOOTH} steps as a thick
 * one, the learning rate as a dashed line on its own right-hand scale, labelled axes and a title.
 */
public final class LossCurveSvg {
    static final int SMOOTH = 10;
    private static final int W = 760, H = 400, LEFT = 70, RIGHT = 70, TOP = 40, BOTTOM = 50;

    private LossCurveSvg() {
    }

    /** The plot of {@code curve} (at least one step) under {@code title}. */
    public static String render(List<DistillStage.StepRecord> curve, String title) {
        if (curve.isEmpty()) {
            throw new IllegalArgumentException("no steps to plot");
        }
        int n = curve.size();
        int first = curve.get(0).step(), last = curve.get(n - 1).step();
        double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY, lrMax = 0;
        for (DistillStage.StepRecord r : curve) {
            if (Double.isFinite(r.loss())) {
                lo = Math.min(lo, r.loss());
                hi = Math.max(hi, r.loss());
            }
            lrMax = Math.max(lrMax, r.lr());
        }
        if (!(hi > lo)) {
            hi = lo + Math.max(1e-9, Math.abs(lo) * 0.1);
            lo = lo - Math.max(1e-9, Math.abs(lo) * 0.1);
        }
        double pad = (hi - lo) * 0.05;
        lo = Math.max(0, lo - pad);
        hi += pad;
        double plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
        double span = Math.max(1, last - first);
        double ylo = lo, yhi = hi;
        java.util.function.DoubleUnaryOperator xs = s -> LEFT + (s - first) / span * plotW;
        java.util.function.DoubleUnaryOperator ys = v -> TOP + (1 - (v - ylo) / (yhi - ylo)) * plotH;
        double lrTop = lrMax > 0 ? lrMax : 1;
        java.util.function.DoubleUnaryOperator ylr = v -> TOP + (1 - v / lrTop) * plotH;

        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                + "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">%n", W, H, W, H));
        sb.append(String.format(Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", W, H));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"22\" font-size=\"15\">%s</text>%n", LEFT, escape(title)));
        // grid and y ticks
        for (int i = 0; i <= 5; i++) {
            double v = lo + (hi - lo) * i / 5;
            double y = ys.applyAsDouble(v);
            sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>%n",
                    LEFT, y, W - RIGHT, y));
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>%n",
                    LEFT - 6, y + 4, num(v)));
            if (lrMax > 0) {
                sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" fill=\"#999\">%s</text>%n",
                        W - RIGHT + 6, ylr.applyAsDouble(lrMax * i / 5) + 4, num(lrMax * i / 5)));
            }
        }
        // x ticks at round step numbers (1, 2 or 5 × 10^k apart, at most 8 of them)
        long tick = 1;
        for (long base = 1; ; base *= 10) {
            long[] cands = {base, 2 * base, 5 * base};
            long found = 0;
            for (long c : cands) {
                if (span / c <= 8) {
                    found = c;
                    break;
                }
            }
            if (found > 0) {
                tick = found;
                break;
            }
        }
        for (long st = (first + tick - 1) / tick * tick; st <= last; st += tick) {
            double x = xs.applyAsDouble(st);
            sb.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>%n",
                    x, TOP, x, H - BOTTOM));
            sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>%n",
                    x, H - BOTTOM + 16, st));
        }
        sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                + "stroke=\"#333\"/>%n", LEFT, TOP, plotW, plotH));
        sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">step</text>%n",
                LEFT + plotW / 2, H - 12));
        sb.append(String.format(Locale.ROOT, "<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" "
                + "text-anchor=\"middle\">loss</text>%n", TOP + plotH / 2, TOP + plotH / 2));
        if (lrMax > 0) {
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" transform=\"rotate(90 %d %.1f)\" "
                    + "text-anchor=\"middle\" fill=\"#999\">learning rate</text>%n", W - 14, TOP + plotH / 2, W - 14,
                    TOP + plotH / 2));
            sb.append(polyline(curve, xs, r -> ylr.applyAsDouble(r.lr()), "#999", 1, "stroke-dasharray=\"4 3\""));
        }
        sb.append(polyline(curve, xs, r -> ys.applyAsDouble(r.loss()), "#9cc3e6", 1, ""));
        double[] avg = movingAverage(curve);
        StringBuilder pts = new StringBuilder();
        for (int i = 0; i < n; i++) {
            if (Double.isFinite(avg[i])) {
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", xs.applyAsDouble(curve.get(i).step()),
                        ys.applyAsDouble(avg[i])));
            }
        }
        sb.append(String.format(Locale.ROOT, "<polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2.5\" "
                + "points=\"%s\"/>%n", pts.toString().strip()));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" fill=\"#1f5fa8\">loss (%d-step average); "
                + "first %s, last %s</text>%n", LEFT + 8, TOP + 16, SMOOTH, num(curve.get(0).loss()),
                num(avg[n - 1])));
        sb.append("</svg>\n");
        return sb.toString();
    }

    private static String polyline(List<DistillStage.StepRecord> curve, java.util.function.DoubleUnaryOperator xs,
                                   java.util.function.ToDoubleFunction<DistillStage.StepRecord> y, String color,
                                   double width, String extra) {
        StringBuilder pts = new StringBuilder();
        for (DistillStage.StepRecord r : curve) {
            double v = y.applyAsDouble(r);
            if (Double.isFinite(v)) {
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", xs.applyAsDouble(r.step()), v));
            }
        }
        return String.format(Locale.ROOT, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" %s points=\"%s\"/>%n",
                color, width, extra, pts.toString().strip());
    }

    /** Mean of the loss over the last SMOOTH steps up to each step. */
    static double[] movingAverage(List<DistillStage.StepRecord> curve) {
        double[] out = new double[curve.size()];
        for (int i = 0; i < out.length; i++) {
            double s = 0;
            int k = 0;
            for (int j = Math.max(0, i - SMOOTH + 1); j <= i; j++) {
                if (Double.isFinite(curve.get(j).loss())) {
                    s += curve.get(j).loss();
                    k++;
                }
            }
            out[i] = k == 0 ? Double.NaN : s / k;
        }
        return out;
    }

    private static String num(double v) {
        if (v == 0) {
            return "0";
        }
        double a = Math.abs(v);
        return a >= 100 ? String.format(Locale.ROOT, "%.0f", v)
                : a >= 0.01 ? String.format(Locale.ROOT, "%.3g", v) : String.format(Locale.ROOT, "%.2e", v);
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
