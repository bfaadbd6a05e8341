"""The verdict rules of the capacity_gap claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, Brackets, Requires

RULES = {
    # Students whose loss against log teacher size has a convex quadratic fit with its vertex inside the grid,
    # whose best observed teacher is neither the smallest nor the largest, and for whom the largest teacher is worse
    # than the best by more than two combined standard errors of the evaluation.
    # Inconclusive when no student's loss differs across teachers by more than that noise at all.
    "capacity_gap.optimal_teacher_exists": Requires("students_with_teacher_effect", 1,
                                                    Above("students_with_interior_optimum", 0)),
    # log T* = log r + k log S over the students with a readable optimum (at least 3): linear means k = 1 (and not
    # 0, no dependence on S); bootstrap interval over students.
    "capacity_gap.linear_law": Requires("students_with_interior_optimum", 3,
                                        Brackets("t_star_log_slope", 1.0, exclude=0.0)),
}
