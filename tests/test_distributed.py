"""The training loop under `accelerate launch` on two CPU processes (gloo) is the single-process run: same losses,
gradient norms and weights, one cache entry written by the main process and read back by the other."""
import json
import os
import runpy
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = r'''
import json, os, sys
import torch
from caplab.substrate import distributed
from caplab.substrate.cache import Cache
from caplab.substrate.data import TokenDataset
from caplab.substrate.train import train_cached

def dataset():
    # rows of different lengths (right padding, no loss there): each process's share of the loss tokens differs
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 60, (24, 20), generator=g)
    lengths = torch.randint(6, 21, (24,), generator=g)
    mask = (torch.arange(20)[None, :] < lengths[:, None]).long()
    return TokenDataset(ids * mask, mask, torch.where(mask.bool(), ids, torch.full_like(ids, -100)))

spec = {"d_model": 32, "n_layer": 2, "n_head": 2, "max_seq_len": 32, "seed": 0}
config = {"steps": 4, "batch_size": 6, "lr": 3e-3, "warmup_steps": 0, "grad_clip": 0.05, "device": "cpu",
          "checkpoint_tokens": [200]}
run = train_cached(spec, dataset(), config, cache=Cache(sys.argv[1]))
model, _ = run.load(device="cpu")
if distributed.context().is_main if distributed.launched() else True:
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, sys.argv[2])
    json.dump({"log": run.log.to_dict("list"), "world": int(os.environ.get("WORLD_SIZE", "1")),
               "checkpoints": len(run.checkpoints)}, open(sys.argv[2] + ".json", "w"))
'''


def _run(tmp_path, name, launcher, monkeypatch):
    """The script's run: in this process (launcher None), else under the launcher; (weights, log and facts)."""
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{name}.pt"
    argv = [str(script), str(tmp_path / f"cache-{name}"), str(out)]
    if launcher is None:
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(script), run_name="__main__")
    else:
        env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out), json.loads((tmp_path / f"{name}.pt.json").read_text())


def test_two_launched_processes_train_as_one(tmp_path, monkeypatch):
    single, single_info = _run(tmp_path, "single", None, monkeypatch)
    # --multi_gpu makes accelerate start the processes through torchrun; without a GPU each trains on the CPU (gloo)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "29517"]
    launched, launched_info = _run(tmp_path, "launched", launch, monkeypatch)
    assert (single_info["world"], launched_info["world"]) == (1, 2)
    for key in ("loss", "grad_norm", "tokens"):
        assert launched_info["log"][key] == pytest.approx(single_info["log"][key], rel=1e-5), key
    assert single_info["log"]["grad_norm"][0] > 0.05                  # clipping acted: the global norm matters
    assert launched_info["checkpoints"] == single_info["checkpoints"] == 1
    for name, weight in single.items():
        assert torch.allclose(launched[name], weight, atol=1e-6), name
