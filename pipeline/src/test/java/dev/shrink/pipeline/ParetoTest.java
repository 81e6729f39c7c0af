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
}
