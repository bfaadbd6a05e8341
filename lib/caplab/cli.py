"""`python -m caplab`: run paper notebooks at a tier, rebuild the index, list papers and claims.

The Makefile calls this; every command explains itself with --help.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from caplab.paths import notebooks_dir, results_dir


def _notebook_names(papers: list[str]) -> list[str] | None:
    """Paper ids or notebook names -> notebook names (`downstream` is tested by the `ceilings` notebook)."""
    from caplab.report.registry import papers as registry
    if not papers:
        return None
    reg = registry()
    names = []
    for p in papers:
        name = reg[p].notebook if p in reg else p
        if name not in names:
            names.append(name)
    return names


def cmd_run(args) -> int:
    from caplab import preflight, runlock, runner, staging, tiers
    notebooks, results = Path(args.notebooks), Path(args.results)
    try:
        outcomes = runner.run(_notebook_names(args.papers), args.tier, notebooks_dir=notebooks,
                              results=results, cell_timeout=args.cell_timeout, shrink=args.shrink)
    except (tiers.ParameterError, preflight.MissingFromCache, runlock.RunLocked, MemoryError) as exc:
        print(f"caplab: nothing was run: {exc}", file=sys.stderr)
        return 2
    except staging.RunInterrupted as exc:      # one line, not a traceback: the run recorded what it kept
        print(f"\ncaplab: interrupted: {exc}; rerun to resume (finished steps are cached)", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ncaplab: interrupted before any notebook ran", file=sys.stderr)
        return 130
    print("\nrun summary:")
    for o in outcomes:
        print(f"  {o.notebook:<14} {o.tier:<6} {o.status:<7} {o.wall_s:7.1f} s  {o.output_dir / 'report.html'}"
              + (f"\n      {o.error}" if o.error else ""))
        if o.traceback:
            print("      " + o.traceback.replace("\n", "\n      "))
    print(f"index: {(results / 'index.html').resolve()}")
    return 1 if any(o.status != "ok" for o in outcomes) else 0


def cmd_validate(args) -> int:
    from caplab import runner, tiers
    notebooks = Path(args.notebooks)
    names = _notebook_names(args.papers) or runner.registered_notebooks(notebooks)
    bad = 0
    for name in names:
        for tier in args.tiers:
            try:
                tiers.plan(notebooks, name, tier)
                print(f"ok      {name} {tier}")
            except tiers.ParameterError as exc:
                bad += 1
                print(f"INVALID {exc}")
    return 1 if bad else 0


def cmd_index(args) -> int:
    from caplab.report import index
    path = index.build(Path(args.results))
    print(f"index: {path.resolve()}")
    return 0


def cmd_list(args) -> int:
    from caplab.report.registry import papers
    notebooks = Path(args.notebooks)
    if args.format == "json":
        rows = [{"paper": paper.id, "notebook": paper.notebook, **c.as_dict()}
                for paper in papers().values() for c in paper.claims]
        if not args.rules:
            rows = [{k: r[k] for k in ("paper", "notebook", "id", "statement", "paper_value", "tiers")} for r in rows]
        print(json.dumps(rows, indent=1))
        return 0
    for paper in papers().values():
        has = (notebooks / f"{paper.notebook}.ipynb").exists()
        print(f"{paper.id}  (arXiv {paper.arxiv}; notebook {paper.notebook}.ipynb"
              f"{'' if has else ', not written yet'})\n  {paper.title}")
        for c in paper.claims:
            print(f"    {c.id:<42} [{'/'.join(c.tiers)}] {c.statement}")
            if args.rules:
                oc = c.operating()
                print(f"    {'':<42} rule: {c.rule.describe()}")
                print(f"    {'':<42} false-positive rate {_rate(oc['false_positive_rate'])}, power "
                      f"{_rate(oc['power'])}; {oc['calibration']}")
    return 0


def _rate(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def cmd_controls(args) -> int:
    from caplab import controls
    from caplab.report import claim_rules
    wanted = set(args.papers or claim_rules.PAPERS)
    unknown = wanted - set(claim_rules.PAPERS)
    if unknown:
        print(f"caplab: unknown paper(s) {sorted(unknown)}; known: {', '.join(claim_rules.PAPERS)}", file=sys.stderr)
        return 2
    bad = 0
    for paper in claim_rules.PAPERS:
        if paper not in wanted:
            continue
        chosen = [c for c in controls.for_paper(paper) if not args.claims or c.claim in args.claims]
        records = []
        for control in chosen:
            oc = controls.measure(control, seed=args.seed)
            records.append(oc)
            ok = oc.false_positive_rate <= controls.calibration.FPR_BOUND
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {oc.claim:<42} false-positive rate {_rate(oc.false_positive_rate)} "
                  f"({oc.null_draws} draws), power {_rate(oc.power)} ({oc.planted_draws} draws)", flush=True)
        if args.write and records:
            controls.write(paper, records)
            print(f"    recorded in {controls.calibration.MEASURED / (paper + '.json')}")
        judged = [c.id for c in _judged_claims(paper)]
        missing = sorted(set(judged) - {c.claim for c in controls.for_paper(paper)})
        for m in missing:
            print(f"--  {m:<42} no control yet: its verdict is 'inconclusive (rule not calibrated)'")
    return 1 if bad else 0


def cmd_plan(args) -> int:
    from caplab import hubplan, runner, tiers
    notebooks = Path(args.notebooks)
    names = _notebook_names(args.papers) or runner.registered_notebooks(notebooks)
    try:
        plans = [tiers.plan(notebooks, name, args.tier, shrink=args.shrink) for name in names]
    except tiers.ParameterError as exc:
        print(f"caplab: {exc}", file=sys.stderr)
        return 2
    for plan in plans:
        print(hubplan.describe(plan, args.gpu_gb * 1e9))
    return 0


def cmd_fetch(args) -> int:
    import os
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "0"    # before huggingface_hub is imported
    from caplab import hubplan, runner, tiers
    notebooks = Path(args.notebooks)
    names = _notebook_names(args.papers) or runner.registered_notebooks(notebooks)
    try:
        plans = [tiers.plan(notebooks, name, args.tier) for name in names]
    except tiers.ParameterError as exc:
        print(f"caplab: nothing was fetched: {exc}", file=sys.stderr)
        return 2
    for plan in plans:
        hubplan.fetch(plan.params, log=lambda line: print(f"{plan.notebook}: {line}", flush=True))
    print("done: the caches hold what these tiers name (copy HF_HOME to an offline machine, or run here)")
    return 0


def _judged_claims(paper: str):
    from caplab.report.registry import papers
    from caplab.report.rules import NotImplementedYet
    return [c for p in papers().values() for c in p.claims
            if c.id.split(".", 1)[0] == paper and not isinstance(c.rule, NotImplementedYet)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m caplab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", default=str(notebooks_dir()), help="folder of paper notebooks and params/")
    parser.add_argument("--results", default=str(results_dir()), help="where reports and the index are written")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute paper notebooks at a tier, render reports, rebuild the index",
                         description="Validate every parameter file first (nothing runs if one is bad), then "
                                     "execute each notebook with papermill into results/<paper>/<tier>/, render it "
                                     "to HTML, and rebuild the index. Exits 1 if any notebook failed.")
    run.add_argument("papers", nargs="*", help="paper ids or notebook names (default: every registered paper)")
    run.add_argument("--tier", default="cpu", choices=("smoke", "cpu", "gpu"), help="parameter tier (default cpu)")
    run.add_argument("--cell-timeout", type=int, default=None,
                     help="seconds per cell (default: $CAPLAB_CELL_TIMEOUT, else by tier)")
    run.add_argument("--shrink", action="store_true",
                     help="make the tier's counts small (steps, rows, bootstrap draws; caplab.shrink.RULES), keeping "
                          "its models, data and design: a minutes-long check of the pipeline, not a result")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check parameter files against the notebooks, execute nothing")
    val.add_argument("papers", nargs="*", help="paper ids or notebook names (default: every notebook)")
    val.add_argument("--tiers", nargs="+", default=["smoke", "cpu", "gpu"], help="tiers to check")
    val.set_defaults(func=cmd_validate)

    idx = sub.add_parser("index", help="rebuild results/index.html and results/scorecard.md from existing runs")
    idx.set_defaults(func=cmd_index)

    lst = sub.add_parser("list", help="list papers and their claims")
    lst.add_argument("--rules", action="store_true",
                     help="also give each claim's verdict rule, its measured false-positive rate and power")
    lst.add_argument("--format", choices=("text", "json"), default="text",
                     help="json: one object per claim (id, rule, false_positive_rate, power, ...)")
    lst.set_defaults(func=cmd_list)

    pln = sub.add_parser("plan", help="list the models and datasets a tier needs, what is cached, rough GPU hours",
                         description="Every model (id, revision) and dataset (id, config) the tier's parameters name, "
                                     "its size on disk where cached, and an order-of-magnitude GPU-hours estimate "
                                     "(caplab.hubplan). Runs nothing, downloads nothing.")
    pln.add_argument("papers", nargs="*", help="paper ids or notebook names (default: every registered paper)")
    pln.add_argument("--tier", default="gpu", choices=("smoke", "cpu", "gpu"), help="parameter tier (default gpu)")
    pln.add_argument("--shrink", action="store_true", help="as `run --shrink` would run it")
    pln.add_argument("--gpu-gb", type=float, default=80.0,
                     help="memory of one GPU for the training runs' memory plan (default 80)")
    pln.set_defaults(func=cmd_plan)

    fet = sub.add_parser("fetch", help="download what a tier needs into the Hugging Face cache (needs network)",
                         description="snapshot_download of every model revision and load_dataset of every dataset "
                                     "configuration the tier names, so that a later run works offline "
                                     "(caplab.hubplan.fetch). Downloads are allowed for this command only.")
    fet.add_argument("papers", nargs="*", help="paper ids or notebook names (default: every registered paper)")
    fet.add_argument("--tier", default="gpu", choices=("smoke", "cpu", "gpu"), help="parameter tier (default gpu)")
    fet.set_defaults(func=cmd_fetch)

    ctl = sub.add_parser("controls", help="measure each rule's false-positive rate and power on simulated worlds",
                         description="Push null worlds (no effect, realistic noise) and planted worlds (the paper's "
                                     "effect, scaled to the analogue) through each claim's functions and rule; "
                                     "print the share read 'reproduced'. --write records them for the verdict gate. "
                                     "Exits 1 if a rule's false-positive rate exceeds 5 %.")
    ctl.add_argument("papers", nargs="*", help="paper ids (default: all)")
    ctl.add_argument("--claims", nargs="+", default=None, help="only these claim ids")
    ctl.add_argument("--seed", type=int, default=0)
    ctl.add_argument("--write", action="store_true", help="record the measured rates in caplab/controls/measured/")
    ctl.set_defaults(func=cmd_controls)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger("papermill").setLevel(logging.WARNING)   # progress comes from caplab.progress, one line each
    return args.func(args)
