package dev.shrink.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * Pareto fronts of points to minimise on both axes, with no winner picked inside the noise
 * (pipeline/COMPARE.md, "Reports and gate"): each coordinate may carry an interval (perplexity its
 * 95% interval, decode speed its min–max over the repeats), and q dominates p only when q is at
 * least as good as p on both axes' values AND better beyond the noise on one of them: q's interval
 * lies wholly below p's on that axis (q.hi &lt; p.lo). So two results whose perplexity intervals
 * overlap are not dominated by each other on perplexity; one of them can still dominate the other
 * by being smaller (size is exact) or faster beyond the speed spread, at no worse a perplexity.
 */
public final class Pareto {
    private Pareto() {
    }

    /**
     * A named point; both coordinates are to be minimised (negate one to maximise it, and swap its
     * interval's ends). {@code xLo ≤ x ≤ xHi} and {@code yLo ≤ y ≤ yHi}: the noise of each.
     */
    public record Point(String name, double x, double xLo, double xHi, double y, double yLo, double yHi) {
        /** An exact point (no noise). */
        public Point(String name, double x, double y) {
            this(name, x, x, x, y, y, y);
        }

        /** Exact on x, y within [yLo, yHi]. */
        public static Point withYInterval(String name, double x, double y, double yLo, double yHi) {
            return new Point(name, x, x, x, y, yLo, yHi);
        }

        /** q dominates this one: q is as good on both values and better beyond the noise on one axis. */
        boolean dominatedBy(Point q) {
            return q.x <= x && q.y <= y && (q.xHi < xLo || q.yHi < yLo);
        }
    }

    /**
     * The names of the points no other point dominates ({@link Point#dominatedBy}), in order of
     * increasing x. Equal points are all on the front.
     */
    public static List<String> front(List<Point> points) {
        List<Point> out = new ArrayList<>();
        for (Point p : points) {
            boolean dominated = false;
            for (Point q : points) {
                if (p.dominatedBy(q)) {
                    dominated = true;
                    break;
                }
            }
            if (!dominated) {
                out.add(p);
            }
        }
        out.sort((a, b) -> a.x() != b.x() ? Double.compare(a.x(), b.x()) : Double.compare(a.y(), b.y()));
        return out.stream().map(Point::name).toList();
    }
}
