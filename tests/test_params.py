"""Typed parameters: every paper's tier files are built whole into its Params; a typo at any depth is caught."""
import copy
import dataclasses
import time
from typing import Annotated

import pytest

from caplab import params as P
from caplab import tiers
from caplab.report.registry import TIERS
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
PAPERS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if tiers.paper_params(p.stem) is not None)


def _mappings(value, path=""):
    """Every nested mapping below the top level, by dotted path."""
    if isinstance(value, dict):
        if path:
            yield path, value
        for key, item in value.items():
            yield from _mappings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _mappings(item, f"{path}[{i}]")


def _get(data, path):
    import re
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def test_every_notebook_has_a_typed_parameter_set_matching_its_parameters_cell():
    assert set(PAPERS) == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    for paper in PAPERS:
        fields = {f.name for f in dataclasses.fields(tiers.paper_params(paper))}
        assert fields == set(tiers.notebook_parameters(NOTEBOOKS / f"{paper}.ipynb")), paper


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("paper", PAPERS)
def test_a_typo_at_any_depth_is_caught_with_its_dotted_path(paper, tier, tmp_path):
    """Plant an unknown key in every nested mapping of the tier file, one at a time: each is refused, naming the
    file, the dotted path and the allowed keys, before anything runs."""
    data = tiers.load_params(tiers.params_file(NOTEBOOKS, paper, tier), paper)
    cls = tiers.paper_params(paper)
    planted = 0
    for path, mapping in list(_mappings(data)):
        broken = copy.deepcopy(data)
        _get(broken, path)["zz_typo"] = 1
        with pytest.raises(P.ParameterError) as err:
            P.build(cls, {**broken, "tier": tier}, source=f"{paper}/{tier}.yaml")
        message = str(err.value)
        if mapping:
            assert f"{paper}/{tier}.yaml: {path}.zz_typo" in message and "allowed" in message, message
        else:                       # `{}` (a step skipped) with a key becomes a spec, and that one is incomplete
            assert f"{paper}/{tier}.yaml: {path}" in message, message
        planted += 1
    assert planted > 0 or tier == "gpu"


@pytest.mark.parametrize("paper", PAPERS)
def test_every_gpu_file_is_checked_fast(paper):
    """The whole gpu tier file is checked in well under 5 s (imports apart: see `caplab validate`'s time)."""
    tiers.plan(NOTEBOOKS, paper, "gpu")                   # warm the imports
    t0 = time.perf_counter()
    tiers.plan(NOTEBOOKS, paper, "gpu")
    assert time.perf_counter() - t0 < 5.0


def test_wrong_types_ranges_and_empty_lists_name_their_path(tmp_path):
    data = tiers.load_params(tiers.params_file(NOTEBOOKS, "kappa", "cpu"), "kappa")
    cls = tiers.paper_params("kappa")
    cases = [({"finetune": {**data["finetune"], "steps": "8"}}, "finetune.steps: must be int"),
             ({"seeds": []}, "seeds: must be non-empty"),
             ({"control_eval_blocks": 0}, "control_eval_blocks: must be > 0"),
             ({"base_model": {**data["base_model"], "family": "gpt2"}}, "base_model: TinySpec: family must be"),
             ({"new_task": {**data["new_task"], "n_entities": 2.5}}, "new_task.n_entities: must be int"),
             ({"lr_lora": "1e-3"}, "lr_lora: must be float")]
    for change, message in cases:
        with pytest.raises(P.ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
            P.build(cls, {**data, **change, "tier": "cpu"}, source="kappa/cpu.yaml")


def test_empty_partial_and_unknown_files_are_refused(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    (notebooks / "params" / "kappa").mkdir(parents=True)
    (notebooks / "kappa.ipynb").write_text((NOTEBOOKS / "kappa.ipynb").read_text())
    pfile = notebooks / "params" / "kappa" / "smoke.yaml"
    full = (NOTEBOOKS / "params" / "kappa" / "smoke.yaml").read_text()
    for text, message in [("", "is empty"), ("# nothing\n", "is empty"),
                          ("seeds: [0]\n", "missing parameters"),
                          (full + "extra_knob: 1\n", "unknown parameter 'extra_knob'"),
                          (full + "tier: cpu\n", "the runner sets")]:
        pfile.write_text(text)
        with pytest.raises(P.ParameterError, match=message):
            tiers.plan(notebooks, "kappa", "smoke")


def test_yaml_reads_exponent_floats_as_numbers():
    assert P.load_yaml("lr: 1e-3\nb: 2.0e-05\nn: 10\ns: 1e3x\n") == {"lr": 1e-3, "b": 2e-5, "n": 10, "s": "1e3x"}


def test_seeds_at_any_depth_and_the_plan_carries_them():
    plan = tiers.plan(NOTEBOOKS, "budget", "cpu")
    found = P.seeds(plan.typed)
    assert found["seed"] == 0 and found["model.seed"] == 0 and found["pretrain.seed"] == 0
    assert "sft_task.seed" in found and "preference_task.seed" in found
    plan = tiers.plan(NOTEBOOKS, "ceilings", "cpu")
    assert "corpus_task.parts[1].seed" in P.seeds(plan.typed)


def test_schemas_of_kinds_and_signatures_follow_the_code():
    from caplab.substrate.tasks import TASK
    TASK.check({"kind": "zipf_language", "n_sentences": 10}, "t", "task")
    with pytest.raises(P.ParameterError, match=r"task: missing 'n_sentences'"):
        TASK.check({"kind": "zipf_language"}, "t", "task")
    with pytest.raises(P.ParameterError, match=r"task.kind: task spec kind 'poem' is not one of"):
        TASK.check({"kind": "poem"}, "t", "task")
    with pytest.raises(P.ParameterError, match=r"task.parts\[0\].n_digitz: unknown key"):
        TASK.check({"kind": "mixture", "parts": [{"kind": "arithmetic", "n": 3, "n_digitz": 2}]}, "t", "task")


def test_strict_dataclass_building():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        a: int = 1
        b: list[float] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Annotated[dict, P.Fields(Inner)]
        name: str = "x"

    assert P.strict(Outer, {"inner": {"a": 2}}).inner == {"a": 2}
    with pytest.raises(P.ParameterError, match=r"Outer: inner.b\[1\]: must be float, got str"):
        P.strict(Outer, {"inner": {"b": [1.0, "2"]}})
    with pytest.raises(P.ParameterError, match="missing 'inner'"):
        P.strict(Outer, {})
