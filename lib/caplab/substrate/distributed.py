"""The training loop on several processes (GPUs), through `accelerate`: the same run, its global batch split.

Launched with `accelerate launch --num_processes K script.py` (or torchrun), where the script calls
`caplab.substrate.train.train` / `train_cached`, every process runs the same loop on the same data order; each takes
its share of every global batch (rows `rank::K`), `accelerate` prepares the model and optimizer (DDP, or FSDP when
`accelerate config` chose it) and averages the gradients, and each process's loss is weighted by its share of the
batch's loss tokens, so the step is the single-process step (checked on two CPU processes: tests/test_distributed.py).
Gradient clipping uses the global norm (`Accelerator.clip_grad_norm_`); only the main process writes files.

A plain run (no launcher, WORLD_SIZE unset or 1) uses `Single`, which changes nothing.
"""
from __future__ import annotations

import os

import torch


def launched() -> bool:
    """Whether this process is one of several started by a launcher (accelerate launch, torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Single:
    """One process: every method is the identity of the plain loop."""
    rank, world = 0, 1
    is_main = True

    def prepare(self, model, optimizer):
        return model, optimizer

    def shard(self, indices):
        return indices

    def weight(self, loss, local_tokens: int, global_tokens: int):
        return loss

    def backward(self, loss):
        loss.backward()

    def clip(self, params, max_norm: float):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def global_loss(self, weighted_loss):
        return weighted_loss.detach()

    def wait(self):
        pass


class Launched(Single):
    """Several processes, one `accelerate.Accelerator` (DDP or FSDP as `accelerate config` says)."""

    def __init__(self):
        from accelerate import Accelerator
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

    def prepare(self, model, optimizer):
        return self.accelerator.prepare(model, optimizer)

    def shard(self, indices):
        return indices[self.rank::self.world]

    def weight(self, loss, local_tokens: int, global_tokens: int):
        # the gradients are averaged over processes: weighting each process's mean loss by world x its share of
        # the loss tokens makes the average the global batch's token mean
        return loss * (self.world * local_tokens / max(global_tokens, 1))

    def backward(self, loss):
        self.accelerator.backward(loss)

    def clip(self, params, max_norm: float):
        return self.accelerator.clip_grad_norm_(params, max_norm)

    def global_loss(self, weighted_loss):
        return self.accelerator.reduce(weighted_loss.detach(), reduction="mean")

    def wait(self):
        self.accelerator.wait_for_everyone()


def context() -> Single:
    return Launched() if launched() else Single()
