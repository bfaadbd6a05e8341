"""The verdict rules of the capacity_gap claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, Brackets, Capped, Requires

RULES = {
    # An interior optimum: for some student, an interior teacher's student beats both the smallest and the largest
    # teacher's (intersection-union test, Bonferroni over the interior teachers, Holm 5 % across students), on a
    # readable fit (convex quadratic in ln T with its vertex inside the grid, best observed teacher interior). The
    # noise of a pair is the seed spread, so the rule reads only tables with at least 3 seeds per pair; inconclusive
    # too when no student's loss differs across teachers at all (F test, Holm). Capped: the cpu tier has one seed
    # per pair, and with the evaluation SE alone (seed noise missing) a null world passes (issue 13's review).
    "capacity_gap.optimal_teacher_exists": Capped(
        Requires("seeds_per_pair", 3, Requires("students_with_teacher_effect", 1,
                                               Above("students_with_interior_optimum", 0))),
        why="needs 3 seeds per pair (issue 16)"),
    # log T* = log r + k log S over the readable students, read when at least 3 students have an interior optimum
    # (as counted above, so with at least 3 seeds per pair): linear means k = 1 (and not 0, no dependence on S);
    # bootstrap interval over students. Capped: on the cpu grid the optima of the two smaller students (2.5 S) lie
    # at or below the smallest teacher, and one seed per pair gives no calibrated count.
    "capacity_gap.linear_law": Capped(
        Requires("seeds_per_pair", 3, Requires("students_with_interior_optimum", 3,
                                               Brackets("t_star_log_slope", 1.0, exclude=0.0))),
        why="needs a teacher grid that brackets every student and 3 seeds per pair (issue 16)"),
}
