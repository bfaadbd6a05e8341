"""One source of truth for dependencies; the README's commands are the ones that exist."""
import re
import tomllib

import yaml

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REQUIRED = {"torch", "transformers", "trl", "peft", "datasets", "safetensors", "papermill", "nbconvert",
            "jupyterlab", "ipykernel", "seaborn", "statsmodels", "scipy", "pandas", "jinja2", "tqdm"}


def names(requirements):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_runtime_dependencies_and_exact_torch_pin():
    deps = PYPROJECT["project"]["dependencies"]
    assert REQUIRED <= names(deps)
    assert "torch==2.13.0" in deps          # without the exact pin, peft/trl pull a CUDA torch of several GB
    assert "pytest" in names(PYPROJECT["project"]["optional-dependencies"]["dev"])


def test_environment_yml_installs_the_same_package_and_declares_nothing_else():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(re.split(r"[=<> ]", d)[0] for d in conda) == ["pip", "python"]
    assert "python=3.11" in conda and PYPROJECT["project"]["requires-python"].startswith(">=3.11")
    assert pip == ['-e ".[dev]"'] or pip == ["-e .[dev]"]


def test_readme_commands_are_make_targets_and_ci_calls_the_test_command():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, flags=re.M))
    for target in re.findall(r"`make ([a-z]+)", readme):
        assert target in targets, f"README mentions `make {target}`, which the Makefile lacks"
    assert "make reproduce" in readme and "make test" in readme
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), flags=re.M)
