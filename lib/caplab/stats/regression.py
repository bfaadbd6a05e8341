"""Slopes with intervals: one ordinary least-squares fit (statsmodels) for every "does y move with x" reading."""
from __future__ import annotations

import pandas as pd
import statsmodels.formula.api as smf


def slope(frame: pd.DataFrame, y: str, x: str, *, groups: str | None = None, robust: bool = False,
          alpha: float = 0.05) -> dict:
    """The OLS slope of `y` on `x` with its (1 - alpha) interval and p-value: one intercept per level of `groups`
    (a fixed effect) when given and it has more than one level; `robust`: HC1 standard errors."""
    if frame[x].nunique() < 2:
        raise ValueError(f"a slope needs at least two distinct {x} values")
    formula = f"{y} ~ {x}" + (f" + C({groups})" if groups is not None and frame[groups].nunique() > 1 else "")
    model = smf.ols(formula, data=frame.assign(**{y: frame[y].astype(float)}))
    result = model.fit(cov_type="HC1") if robust else model.fit()
    lo, hi = result.conf_int(alpha).loc[x]
    return {"slope": float(result.params[x]), "lo": float(lo), "hi": float(hi), "p_value": float(result.pvalues[x]),
            "n": int(result.nobs)}
