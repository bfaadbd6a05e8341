"""caplab: reproducible replications of papers on the capacity and scaling of language models.

Layers import only downwards: `report` (claims, verdicts, provenance, index, plots) over `papers` (one module per
paper: its typed parameters and claim evidence) over `science` (mechanisms the papers share) over `stats` (laws,
fits, bootstrap, slopes) and `substrate` (tiny models, tokenizers, tasks, training, evaluation, the cache).
`params` (typed parameters) serves every layer; `runner` and `cli` sit on top and drive notebooks through papermill.
"""
__version__ = "0.1.0"

# Under the runner (`$CAPLAB_RUN_LOG` set), library chatter goes to run.log from the first import on.
from caplab.substrate import runlog as _runlog  # noqa: E402

_runlog.capture()
