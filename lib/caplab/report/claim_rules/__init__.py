"""The verdict rules, one module per paper (the `downstream` claims are tested by the ceilings notebook), each a
dict `RULES` from claim id to `caplab.report.rules.Rule`, or to a function of the claim's papers.yaml entry that
returns one (for rules that read a margin stated there)."""
PAPERS = ("ceilings", "downstream", "shannon", "kappa", "rl_scaling", "budget", "capacity_gap", "densing")
