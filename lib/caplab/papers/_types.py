"""The types the papers' parameter sets share: specs checked by the schemas of the code that consumes them."""
from __future__ import annotations

from typing import Annotated

from caplab.params import Fields, non_empty, optional, positive
from caplab.science.posttrain import DPOSettings, SFTSettings
from caplab.science.rl import GRPOSettings
from caplab.substrate.family import CHECKPOINTS, FAMILY
from caplab.substrate.models import MODEL
from caplab.substrate.tasks import PREFERENCES, QUESTIONS, TASK
from caplab.substrate.train import TRAIN

Model = Annotated[dict, MODEL]                          # get_model: a tiny shape, {"pretrained", "revision"}, {"path"}
OptionalModel = Annotated[dict, optional(MODEL)]        # {} where the tier builds the model itself
Task = Annotated[dict, TASK]                            # load_task: {"kind": ..., <the generator's arguments>}
OptionalTask = Annotated[dict, optional(TASK)]          # {} where the tier needs no such text (a pretrained base)
Preferences = Annotated[dict, PREFERENCES]              # load_preferences
Questions = Annotated[dict, QUESTIONS]                  # load_questions
Family = Annotated[dict, FAMILY]                        # build_family: {"kind": "tiny" | "hub", ...}
Checkpoints = Annotated[dict, optional(CHECKPOINTS)]    # log_spaced_tokens's arguments; {} for a hub family
Train = Annotated[dict, TRAIN]                          # TrainConfig overrides
OptionalTrain = Annotated[dict, optional(TRAIN)]        # {} where nothing is trained (a pretrained base)
SFT = Annotated[dict, Fields(SFTSettings)]              # SFTSettings overrides (defaults: the budget paper's code)
DPO = Annotated[dict, Fields(DPOSettings)]              # DPOSettings overrides
GRPO = Annotated[dict, Fields(GRPOSettings)]            # GRPOSettings overrides (defaults: Tan et al.'s code)
Count = positive(int)
Seeds = non_empty(list[int])                            # at least one seed
