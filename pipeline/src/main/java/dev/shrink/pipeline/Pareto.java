package dev.shrink.pipeline;

import java.util.ArrayList;
import java.util.List;

/** Pareto fronts of points to minimise on both axes. */
public final class Pareto {
    private Pareto() {
    }

    /** A named point; both coordinates are to be minimised (negate one to maximise it). */
    public record Point(String name, double x, double y) {
    }

    /**
     * The names of the points no other point dominates (q dominates p when q.x ≤ p.x and q.y ≤ p.y,
     * one of them strictly), in order of increasing x. Equal points are all on the front.
     */
    public static List<String> front(List<Point> points) {
        List<Point> out = new ArrayList<>();
        for (Point p : points) {
            boolean dominated = false;
            for (Point q : points) {
                if (q.x() <= p.x() && q.y() <= p.y() && (q.x() < p.x() || q.y() < p.y())) {
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
