package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shrink.pipeline.Pareto.Point;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Pareto fronts of hand-made points (both axes minimised). */
class ParetoTest {
    @Test
    void frontOfHandMadePoints() {
        // size (MiB), perplexity
        List<Point> pts = List.of(
                new Point("baseline", 25.7, 46.8),
                new Point("rtn", 11.2, 47.9),   // dominated by gptq: same size, worse ppl
                new Point("gptq", 11.2, 47.1),
                new Point("awq", 11.0, 47.5),   // smallest: on the front
                new Point("bad", 30.0, 50.0),   // dominated by everything
                new Point("mid", 18.0, 46.9));  // between gptq and baseline
        assertEquals(List.of("awq", "gptq", "mid", "baseline"), Pareto.front(pts));
    }

    @Test
    void equalPointsAreBothOnTheFrontAndASinglePointIsItsOwnFront() {
        assertEquals(List.of("a", "b"), Pareto.front(List.of(new Point("a", 1, 1), new Point("b", 1, 1), new Point("c", 1, 2))));
        assertEquals(List.of("only"), Pareto.front(List.of(new Point("only", 3, 3))));
        assertEquals(List.of(), Pareto.front(List.of()));
    }

    @Test
    void speedIsMaximisedByNegatingIt() {
        // decode tok/s (negated), perplexity: faster and better wins
        List<Point> pts = List.of(new Point("fast-bad", -100, 60), new Point("slow-good", -50, 45),
                new Point("slow-bad", -40, 70));
        assertEquals(List.of("fast-bad", "slow-good"), Pareto.front(pts));
    }

    @Test
    void noWinnerInsideThePerplexityNoise() {
        // size (MiB), perplexity with its 95% interval
        List<Point> pts = List.of(
                Point.withYInterval("a", 11.2, 47.1, 46.5, 47.7),
                Point.withYInterval("b", 11.2, 47.3, 46.7, 47.9),  // same size, worse only inside a's interval: kept
                Point.withYInterval("c", 11.2, 49.0, 48.5, 49.5),  // worse beyond the noise at the same size: dominated
                Point.withYInterval("e", 12.0, 47.2, 46.6, 47.8),  // larger and no better than a: dominated by size
                Point.withYInterval("d", 10.0, 47.4, 46.8, 48.0)); // smallest: on the front
        assertEquals(List.of("d", "a", "b"), Pareto.front(pts));
        // the same points without intervals: the exact rule picks a over b
        List<Point> exact = pts.stream().map(p -> new Point(p.name(), p.x(), p.y())).toList();
        assertEquals(List.of("d", "a"), Pareto.front(exact));
    }

    @Test
    void speedSpreadsThatOverlapDecideNothing() {
        // decode tok/s negated with its min-max spread (also negated), perplexity exact
        List<Point> pts = List.of(new Point("p", -60, -66, -55, 45, 45, 45), new Point("q", -63, -70, -58, 45, 45, 45),
                new Point("r", -40, -42, -38, 45, 45, 45));
        assertEquals(List.of("q", "p"), Pareto.front(pts), "q is not faster than p beyond the spread; both beat r beyond it");
    }
}
