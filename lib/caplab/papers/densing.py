"""The densing law (Xiao et al. 2024, arXiv 2412.04315): the parameter set and experiment of the `densing`
notebook.

The experiment caches what it computes (scores per model, trained targets), so it lives in the hashed layers, in
`caplab.science.densing_experiment` (models and scores) and `caplab.science.densing_estimate` (estimation and the
claims' evidence; the method itself: `caplab.science.densing`); this module is the paper's entry point and
re-exports both.
"""
from caplab.science.densing_experiment import *  # noqa: F401,F403
from caplab.science.densing_estimate import *  # noqa: F401,F403
from caplab.science.densing_experiment import Params  # noqa: F401  (the typed parameter set, explicitly)
