"""caplab: reproducible replications of papers on the capacity and scaling of language models.

Layers import only downwards: `report` (claims, verdicts, provenance, index) over `science` (fits, swaps,
perturbations, selection, post-training) over `substrate` (tiny models, tokenizers, data, training, evaluation,
the cache). `runner` and `cli` sit on top and drive notebooks through papermill.
"""
__version__ = "0.1.0"

# Under the runner (`$CAPLAB_RUN_LOG` set), library chatter goes to run.log from the first import on.
from caplab.substrate import runlog as _runlog  # noqa: E402

_runlog.capture()
