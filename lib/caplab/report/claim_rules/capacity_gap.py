"""The verdict rules of the capacity_gap claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, Brackets, Requires

RULES = {
    # An interior optimum: for some student whose teacher grid brackets it (smallest teacher about its size, largest
    # >= 30x it), an interior teacher's student beats both the smallest and the largest teacher's (paired over seeds
    # and evaluation blocks, intersection-union test, Bonferroni over the interior teachers, Holm 5 % across the
    # bracketed students), with a readable T* (convex quadratic in ln T, vertex inside the grid, best observed
    # teacher interior). Inconclusive with fewer than 3 seeds per pair (the seed-to-seed noise is then unknown) or
    # no bracketed student. The curse alone (largest worse than the best) is reported beside it, not judged: a
    # smaller-is-better curve has it too.
    "capacity_gap.optimal_teacher_exists": Requires(
        "seeds_per_pair", 3, Requires("students_bracketed", 1, Above("students_with_interior_optimum", 0))),
    # log T* = log r + k log S over the students counted above, read when at least 3 have an interior optimum (so
    # with at least 3 seeds per pair): linear means k = 1, and not 0 (no dependence on S); interval from the joint
    # seed-and-block bootstrap of every T*.
    "capacity_gap.linear_law": Requires(
        "seeds_per_pair", 3, Requires("students_with_interior_optimum", 3,
                                      Brackets("t_star_log_slope", 1.0, exclude=0.0))),
}
