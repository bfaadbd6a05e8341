"""KappaTune: condition numbers of weight tensors, kappa-based selection, budget matching, the entropy claim.

kappa(W) = sigma_max / (sigma_min + eps) of a weight reshaped to 2-D (rows = first dimension), singular values
from `torch.linalg.svdvals` in float32. eps = 1e-8 as in PEFT's `KappaTuneSelector`.

Tie rule (all selections here): a stable sort on kappa, so equal kappas keep model order, i.e. the order of
`named_parameters()` (the row order of the kappa frame) or of `named_modules()` for the PEFT-like selector.
"""
import copy
import math
import re
import warnings

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from caplab.stats.resampling import percentile_interval, resample_indices

EPS = 1e-8
PEFT_MOE_SUFFIXES = (".gate_up_proj", ".down_proj", ".gate_proj", ".up_proj")
HOWS = ("lowest", "highest", "random")
SPECTRA = ("exponential", "power", "random", "mixed")
TENSOR_TYPES = {  # last module-name component -> tensor type (Llama / GPTNeoX / GPT-2 / MoE names)
    "q_proj": "q", "k_proj": "k", "v_proj": "v", "query_key_value": "qkv", "qkv_proj": "qkv", "c_attn": "qkv",
    "o_proj": "attn-out", "dense": "attn-out", "c_proj": "out", "gate_proj": "mlp-gate", "gate_up_proj": "mlp-in",
    "up_proj": "mlp-in", "dense_h_to_4h": "mlp-in", "c_fc": "mlp-in", "down_proj": "mlp-out",
    "dense_4h_to_h": "mlp-out", "embed_tokens": "embedding", "embed_in": "embedding", "wte": "embedding",
    "wpe": "embedding", "lm_head": "lm-head", "embed_out": "lm-head", "gate": "router", "router": "router",
}


def matrix_kappa(weight, eps=EPS):
    """(kappa, sigma_max, sigma_min) of `weight` viewed as (rows, -1), computed in float32 exactly as PEFT does."""
    w = weight.detach().float()
    s = torch.linalg.svdvals(w.reshape(w.shape[0], -1))
    return (s[0] / (s[-1] + eps)).item(), s[0].item(), s[-1].item()


def tensor_type(name):
    """Tensor type of a parameter or module name, e.g. 'model.layers.0.self_attn.q_proj.weight' -> 'q'."""
    parts = [p for p in name.split(".") if p not in ("weight", "bias")]
    return TENSOR_TYPES.get(parts[-1], "other") if parts else "other"


def layer_index(name):
    """First all-digit component of a dotted name (the block index), or None."""
    match = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return int(match.group(1)) if match else None


def _too_big(shape, max_dim_size_to_analyze):
    return max_dim_size_to_analyze is not None and any(d > max_dim_size_to_analyze for d in shape)


def condition_numbers(model, max_dim_size_to_analyze=16384, eps=EPS):
    """One row per eligible weight of `model.named_parameters()`: ndim >= 2 and no dimension above the size rule
    (None: no limit). Columns: name, module, tensor_type, layer, shape, numel, kappa, sigma_max, sigma_min,
    is_linear (the weight of an nn.Linear, the modules PEFT considers). frame.attrs['skipped'] maps skipped names
    to the reason."""
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    rows, skipped = [], {}
    for name, param in model.named_parameters():
        if param.ndim < 2:
            skipped[name] = "ndim<2"
            continue
        if _too_big(param.shape, max_dim_size_to_analyze):
            skipped[name] = f"dimension>{max_dim_size_to_analyze}"
            continue
        kappa, smax, smin = matrix_kappa(param, eps)
        rows.append(dict(name=name, module=name.rsplit(".", 1)[0], tensor_type=tensor_type(name),
                         layer=layer_index(name), shape=tuple(param.shape), numel=param.numel(), kappa=kappa,
                         sigma_max=smax, sigma_min=smin, is_linear=id(param) in linear_weights))
    columns = ["name", "module", "tensor_type", "layer", "shape", "numel", "kappa", "sigma_max", "sigma_min",
               "is_linear"]
    frame = pd.DataFrame(rows, columns=columns).astype({"layer": "Int64"})
    frame.attrs["skipped"] = skipped
    return frame


def select_tensors(kappa_frame, k, how="lowest", seed=None):
    """The k rows of `kappa_frame` to fine-tune: 'lowest' (ascending kappa), 'highest' (descending kappa), or
    'random' (a seeded uniform draw, returned in model order; `seed` is required). Ties: model (row) order."""
    if how not in HOWS:
        raise ValueError(f"how={how!r}: allowed values are {HOWS}")
    if not {"name", "kappa"} <= set(kappa_frame.columns):
        raise ValueError(f"kappa_frame needs columns 'name' and 'kappa', got {list(kappa_frame.columns)}")
    n = len(kappa_frame)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"k={k!r}: must be an integer in [0, {n}] (the number of rows)")
    kappa = kappa_frame["kappa"].to_numpy(dtype=float)
    if np.isnan(kappa).any():
        raise ValueError("kappa_frame has NaN kappas")
    if how == "random":
        if seed is None:
            raise ValueError("seed=None: how='random' needs an integer seed")
        order = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    else:
        order = np.argsort(kappa if how == "lowest" else -kappa, kind="stable")[:k]
    return kappa_frame.iloc[order].reset_index(drop=True)


def _peft_budget(n, top_p, num_modules):
    """PEFT's k: min(num_modules, n) if given, else max(1, int(n * top_p))."""
    if num_modules is not None:
        if num_modules < 0:
            raise ValueError(f"num_modules={num_modules!r}: must be >= 0 or None")
        return min(num_modules, n)
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r}: must be in (0, 1]")
    return max(1, int(n * top_p))


def _expert_mean_kappa(param, eps=EPS):
    """Mean over experts of the kappa of each expert's 2-D slice of a fused (experts, rows, cols) tensor."""
    return sum(matrix_kappa(expert, eps)[0] for expert in param.detach()) / param.shape[0]


def select_modules_like_peft(model, top_p=0.2, num_modules=None, max_dim_size_to_analyze=16384,
                             moe_param_suffixes=PEFT_MOE_SUFFIXES):
    """What PEFT's `find_kappa_target_modules` returns, computed by our own code: {'target_modules': nn.Linear
    module names, 'target_parameters': fused 3-D MoE parameter names or None}, each ascending in kappa."""
    modules = {name: matrix_kappa(m.weight)[0] for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not _too_big(m.weight.shape, max_dim_size_to_analyze)}
    params = {name: _expert_mean_kappa(p) for name, p in model.named_parameters()
              if p.dim() == 3 and name.endswith(tuple(moe_param_suffixes))
              and not _too_big(p.shape[1:], max_dim_size_to_analyze)}
    chosen = {}
    for key, kappas in (("target_modules", modules), ("target_parameters", params)):
        ranked = sorted(kappas, key=kappas.get)  # stable: ties keep model order
        chosen[key] = ranked[:_peft_budget(len(ranked), top_p, num_modules)] if ranked else []
    chosen["target_parameters"] = chosen["target_parameters"] or None
    return chosen


def peft_selection(model, top_p=0.2, num_modules=None, max_dim_size_to_analyze=16384):
    """PEFT's own selection (`find_kappa_target_modules`, or `KappaTuneSelector` when num_modules is given)."""
    from peft import find_kappa_target_modules
    from peft.helpers import KappaTuneSelector

    if num_modules is None:
        return find_kappa_target_modules(model, top_p=top_p, max_dim_size_to_analyze=max_dim_size_to_analyze,
                                         show_progress=False)
    selector = KappaTuneSelector(model, max_dim_size_to_analyze=max_dim_size_to_analyze, show_progress=False)
    return {"target_modules": selector.get_best_targets(num_modules=num_modules),
            "target_parameters": selector.get_best_target_parameters(num_modules=num_modules) or None}


def _as_names(selection):
    if isinstance(selection, dict):
        return list(selection.get("target_modules") or []) + list(selection.get("target_parameters") or [])
    return list(selection)


def selection_agreement(ours, theirs):
    """Compare two selections (name lists or PEFT-style dicts): equal (same names, same order), same_set,
    sizes, overlap, Jaccard, and the names only one side chose."""
    a, b = _as_names(ours), _as_names(theirs)
    union = set(a) | set(b)
    return dict(equal=a == b, same_set=set(a) == set(b), n_ours=len(a), n_theirs=len(b),
                overlap=len(set(a) & set(b)), jaccard=len(set(a) & set(b)) / len(union) if union else 1.0,
                only_ours=sorted(set(a) - set(b)), only_theirs=sorted(set(b) - set(a)))


def lora_all_linear_targets(model):
    """Module names PEFT's LoraConfig(target_modules='all-linear') adapts: nn.Linear and transformers' Conv1D,
    minus the model's output embeddings (lm_head)."""
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and m is not output]


def lora_parameter_count(model, rank):
    """Trainable parameters of LoRA on all linears at `rank`: rank * (in + out) summed over the targets."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank={rank!r}: must be a positive integer")
    modules = dict(model.named_modules())
    return rank * sum(sum(modules[name].weight.shape) for name in lora_all_linear_targets(model))


def match_lora_rank(model, target_params):
    """(rank, count): the LoRA-on-all-linears rank whose count is closest to target_params (ties: lower rank)."""
    if target_params <= 0:
        raise ValueError(f"target_params={target_params!r}: must be positive")
    per_rank = lora_parameter_count(model, 1)
    low = max(1, math.floor(target_params / per_rank))
    rank = min((low, low + 1), key=lambda r: (abs(r * per_rank - target_params), r))
    return rank, rank * per_rank


def peft_lora_parameter_count(model, rank):
    """PEFT's own count (`get_nb_trainable_parameters`) for LoRA on all linears at `rank`, on a copy of model."""
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers deprecation raised inside PEFT
        peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=rank, target_modules="all-linear"))
    return peft_model.get_nb_trainable_parameters()[0]


def budget_table(model, k, seed=0, kappa_frame=None, target_arm="lowest", max_dim_size_to_analyze=16384):
    """Trainable parameters per arm: the k lowest / highest / random-kappa tensors (whole tensors trained), LoRA
    on all linears at the rank matching `target_arm`'s count, and full fine-tuning. One row per arm."""
    if target_arm not in HOWS:
        raise ValueError(f"target_arm={target_arm!r}: allowed values are {HOWS}")
    frame = condition_numbers(model, max_dim_size_to_analyze) if kappa_frame is None else kappa_frame
    rows = []
    for how in HOWS:
        chosen = select_tensors(frame, k, how, seed=seed)
        rows.append(dict(arm=how, n_tensors=k, trainable_params=int(chosen["numel"].sum()), lora_rank=None))
    target = next(r["trainable_params"] for r in rows if r["arm"] == target_arm)
    rank, count = match_lora_rank(model, target)
    rows.append(dict(arm="lora-all-linear", n_tensors=len(lora_all_linear_targets(model)), trainable_params=count,
                     lora_rank=rank))
    rows.append(dict(arm="full", n_tensors=len(list(model.parameters())),
                     trainable_params=sum(p.numel() for p in model.parameters()), lora_rank=None))
    table = pd.DataFrame(rows).astype({"lora_rank": "Int64"})
    table["ratio_to_target"] = table["trainable_params"] / target
    return table


def _haar_orthogonal(dim, generator):
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _spectrum(family, s, dim, generator):
    """Descending singular values with log(sigma_max / sigma_min) = s; the family sets the interior."""
    i = torch.arange(dim, dtype=torch.float64)
    if family == "exponential":
        return torch.exp(-s * i / (dim - 1))
    if family == "power":
        return (i + 1) ** (-s / math.log(dim))
    inner = torch.sort(torch.rand(dim - 2, generator=generator, dtype=torch.float64)).values
    return torch.exp(-s * torch.cat([i.new_zeros(1), inner, i.new_ones(1)]))


def gaussian_output_entropy(weight):
    """Differential entropy (nats) of Wx for x ~ N(0, I): 0.5 * log det(2 pi e W W^T), via slogdet."""
    w = weight.double()
    sign, logdet = torch.linalg.slogdet(w @ w.T)
    return 0.5 * (w.shape[0] * math.log(2 * math.pi * math.e) + logdet.item()) if sign > 0 else -math.inf


def entropy_monte_carlo(n=200, dim=16, frobenius_norm=None, seed=0, spectrum="mixed", max_log_kappa=8.0):
    """n random dim x dim matrices W = U diag(sigma) V^T (Haar U, V) rescaled to a fixed Frobenius norm (default
    sqrt(dim)), log kappa drawn uniformly in [0, max_log_kappa], spectrum family fixed or drawn ('mixed'). Per
    matrix, measured from W: kappa, sum(log sigma) (svdvals), entropy (slogdet, independent), closed form."""
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum={spectrum!r}: allowed values are {SPECTRA}")
    if n < 2 or dim < 3:
        raise ValueError(f"n={n!r}, dim={dim!r}: need n >= 2 and dim >= 3")
    norm = math.sqrt(dim) if frobenius_norm is None else frobenius_norm
    if norm <= 0 or max_log_kappa < 0:
        raise ValueError(f"frobenius_norm={norm!r}, max_log_kappa={max_log_kappa!r}: must be > 0 and >= 0")
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(n):
        family = SPECTRA[int(torch.randint(3, (1,), generator=gen))] if spectrum == "mixed" else spectrum
        s = max_log_kappa * torch.rand(1, generator=gen, dtype=torch.float64).item()
        sigma = _spectrum(family, s, dim, gen)
        sigma = sigma * norm / torch.linalg.vector_norm(sigma)
        w = _haar_orthogonal(dim, gen) @ torch.diag(sigma) @ _haar_orthogonal(dim, gen).T
        measured = torch.linalg.svdvals(w)
        sum_log_sigma = torch.log(measured).sum().item()
        rows.append(dict(matrix=index, spectrum=family, s=s, kappa=(measured[0] / measured[-1]).item(),
                         sum_log_sigma=sum_log_sigma, entropy=gaussian_output_entropy(w),
                         entropy_closed_form=0.5 * dim * math.log(2 * math.pi * math.e) + sum_log_sigma,
                         frobenius_norm=torch.linalg.matrix_norm(w).item()))
    frame = pd.DataFrame(rows)
    frame.insert(4, "log_kappa", np.log(frame["kappa"]))
    return frame


def entropy_relation(frame, n_boot=2000, confidence=0.95, seed=0):
    """Spearman rho of log kappa vs entropy with a percentile bootstrap CI, the fraction of matrix pairs (with
    distinct kappas) in which the higher-kappa matrix has the strictly lower entropy, and the largest gap between
    the slogdet entropy and the closed form."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1)")
    x, y = frame["log_kappa"].to_numpy(), frame["entropy"].to_numpy()
    rho, p_value = stats.spearmanr(x, y)
    idx = resample_indices(len(x), n_boot, np.random.default_rng(seed))
    rx, ry = stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    low, high = percentile_interval(boot, confidence, ignore_nan=True)
    i, j = np.triu_indices(len(x), k=1)
    dk, dh = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs = dk != 0
    gap = (frame["entropy"] - frame["entropy_closed_form"]).abs().max()
    return dict(n=len(x), rho=float(rho), ci_low=float(low), ci_high=float(high), p_value=float(p_value),
                frac_pairs_higher_kappa_lower_entropy=float((dk[pairs] == -dh[pairs]).mean()),
                n_pairs=int(pairs.sum()), max_closed_form_gap=float(gap))


# The fine-tuning arms, by role. "lowest" is KappaTune as PEFT applies it (the k lowest-kappa linear weights of the
# whole model). "high_matched" and "random_matched" are shape-matched to it: for every shape among the lowest-kappa
# tensors, as many tensors of that shape, the highest-kappa ones or a uniform draw (a new draw per seed), so they
# differ from the lowest arm in kappa only, not in shape or size. "high_whole" is the literal contrast (the k
# highest of the whole model): there kappa is confounded with the shape class (e.g. square attention matrices vs
# rectangular MLP matrices, which already differ in kappa at a random initialisation).
ARMS = {"lowest": "lowest-kappa", "high_matched": "highest-kappa (same shapes)",
        "random_matched": "random (same shapes)", "high_whole": "highest-kappa (whole model)", "full": "full",
        "lora": "lora-all-linear", "kappatune_lora": "kappatune-lora"}
CONFOUNDS = {"high_whole": "kappa confounded with shape class and size"}


def shape_matched(kappa_frame, reference, how, seed=None):
    """For every shape among the `reference` tensor names (in their order of appearance), as many rows of
    `kappa_frame` of exactly that shape, chosen by `how` ('lowest', 'highest', 'random') within that shape;
    'random' draws with `seed` (shape i with seed + i). The result has the reference's shapes and sizes."""
    ref = kappa_frame[kappa_frame["name"].isin(list(reference))]
    if len(ref) != len(set(reference)):
        missing = sorted(set(reference) - set(ref["name"]))
        raise ValueError(f"reference tensors not in kappa_frame: {missing}")
    picks = []
    for i, shape in enumerate(dict.fromkeys(ref["shape"])):
        pool = kappa_frame[kappa_frame["shape"] == shape].reset_index(drop=True)
        n = int((ref["shape"] == shape).sum())
        picks.append(select_tensors(pool, n, how, seed=None if seed is None else seed + i))
    return pd.concat(picks, ignore_index=True)


def _lora_rank_for(module_sizes, target_params):
    """The rank r >= 1 whose count r * sum(in + out) is closest to target_params (ties: lower rank)."""
    per_rank = sum(module_sizes)
    low = max(1, math.floor(target_params / per_rank))
    return min((low, low + 1), key=lambda r: (abs(r * per_rank - target_params), r))


def finetune_arms(model, kappa_frame, k, *, seed, lr_tensors, lr_lora, roles=tuple(ARMS)):
    """The fine-tuning arms of one seed (`ARMS`, by role; `roles` picks a subset) and their budget table: whole
    tensors at `lr_tensors` (the k lowest-kappa candidates of `kappa_frame`; the shape-matched highest and random
    tensors, the random ones drawn with `seed`; the k highest of the whole model; every tensor), LoRA on all linears
    at `lr_lora` with the rank whose trainable count best matches the lowest-kappa arm's, and KappaTune-LoRA: LoRA
    on the lowest-kappa modules at LoRA-all's trainable budget (rank matched to it, as the paper matches budgets)
    and lr. Budget columns: role, arm, kind, n_tensors, trainable_params, lora_rank, lr, confound."""
    from caplab.science.forgetting import Arm

    unknown = set(roles) - set(ARMS)
    if unknown:
        raise ValueError(f"roles {sorted(unknown)}: allowed roles are {list(ARMS)}")
    lowest = select_tensors(kappa_frame, k, "lowest")
    chosen = {"lowest": lowest, "high_matched": shape_matched(kappa_frame, lowest["name"], "highest"),
              "random_matched": shape_matched(kappa_frame, lowest["name"], "random", seed=seed),
              "high_whole": select_tensors(kappa_frame, k, "highest")}
    sizes = dict(zip(lowest["name"], lowest["numel"]))
    rank_all, count_all = match_lora_rank(model, int(lowest["numel"].sum()))
    modules = dict(model.named_modules())
    kt_modules = tuple(name.rsplit(".", 1)[0] for name in lowest["name"])
    kt_sizes = [sum(modules[m].weight.shape) for m in kt_modules]
    rank_kt = _lora_rank_for(kt_sizes, count_all)
    arms, rows = [], []
    for role in roles:
        name = ARMS[role]
        if role in chosen:
            arm = Arm(name, "tensors", tensors=tuple(chosen[role]["name"]), lr=lr_tensors)
            count, rank = int(chosen[role]["numel"].sum()), None
        elif role == "full":
            arm, count, rank = Arm(name, "full", lr=lr_tensors), sum(p.numel() for p in model.parameters()), None
        elif role == "lora":
            arm, count, rank = Arm(name, "lora", lora_rank=rank_all, lr=lr_lora), count_all, rank_all
        else:
            arm = Arm(name, "lora", lora_rank=rank_kt, lora_targets=kt_modules, lr=lr_lora)
            count, rank = rank_kt * sum(kt_sizes), rank_kt
        n_tensors = {"tensors": len(arm.tensors), "full": len(list(model.parameters())),
                     "lora": len(arm.lora_targets or lora_all_linear_targets(model))}[arm.kind]
        arms.append(arm)
        rows.append(dict(role=role, arm=name, kind=arm.kind, n_tensors=n_tensors, trainable_params=count,
                         lora_rank=rank, lr=arm.lr, confound=CONFOUNDS.get(role, "")))
    table = pd.DataFrame(rows).astype({"lora_rank": "Int64"})
    table["ratio_to_lowest"] = table["trainable_params"] / sum(sizes.values())
    return arms, table


def lora_sweep_arms(model, kappa_frame, k, lrs):
    """LoRA on all linears at the lowest-kappa arm's budget (as in `finetune_arms`), one arm per learning rate."""
    from caplab.science.forgetting import Arm

    rank, _ = match_lora_rank(model, int(select_tensors(kappa_frame, k, "lowest")["numel"].sum()))
    return [Arm(f"lora-all-linear (lr {lr:g})", "lora", lora_rank=rank, lr=lr) for lr in lrs]
