"""Accuracy predictor (docs/PAPER.md): one-hot features, an MLP of 3 x 400, plus a constant base score.

Features: one-hot of the resolution, then per block slot a one-hot of kernel (3) and of expand (3), all
zero for slots beyond a stage's depth (the paper's encoding), then those block one-hots once more per resolution
(ours: with a few hundred noisy pairs the MLP did not learn on its own that a block's value depends on the
resolution; the copies lifted the cross-validated within-resolution tau, docs/BENCHMARKS.md). Trained on
[sub-net, resolution, score] pairs with an 80/20 split, the score being accuracy or the mean probability of the
true class (mapped back to accuracy linearly); held-out RMSE, Kendall tau over all held-out pairs and within each
resolution (the ranking a search needs), and the same for two baselines are kept with the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.models.supernet import DEFAULT_CHECKPOINT, EXPANDS, KERNELS, NUM_SLOTS, parse_subnet
from tinytl.search.space import E_GENES, K_GENES, R_GENE, active_mask, check_resolutions, encode
from tinytl.storage import (FieldRule, check_fields, check_input_file, is_int_in, is_json_like, is_number,
                            is_tensor_dict, load_file, save_file)
from tinytl.validation import MAX_CLASSES, MAX_TRAIN_RESOLUTION, MIN_RESOLUTION

DEFAULT_PREDICTOR = DEFAULT_CHECKPOINT.with_name("supernet_predictor.pt")
HIDDEN = 400
LAYERS = 3


def feature_count(num_resolutions: int) -> int:
    """Width of `features` rows: the resolution, the blocks, and the blocks once more per resolution."""
    return num_resolutions + NUM_SLOTS * 6 * (1 + num_resolutions)


def features(genes: np.ndarray, num_resolutions: int) -> np.ndarray:
    """[n, feature_count] float32 one-hot encoding of gene rows: the resolution, each slot's kernel and expand
    (zero beyond a stage's depth), and those block one-hots again in the row's resolution's copy only, so a
    block choice may help more at one resolution than at another (measured: it does, docs/BENCHMARKS.md)."""
    n = len(genes)
    active = active_mask(genes)[:, :, None]
    kernel = np.eye(len(KERNELS), dtype=np.float32)[genes[:, K_GENES]] * active  # [n, 20, 3]
    expand = np.eye(len(EXPANDS), dtype=np.float32)[genes[:, E_GENES]] * active
    res = np.eye(num_resolutions, dtype=np.float32)[genes[:, R_GENE]]
    blocks = np.concatenate([kernel, expand], axis=2).reshape(n, NUM_SLOTS * 6)
    per_res = (res[:, :, None] * blocks[:, None, :]).reshape(n, num_resolutions * NUM_SLOTS * 6)
    return np.concatenate([res, blocks, per_res], axis=1)


class AccuracyPredictor(nn.Module):
    """MLP(features) + base score, mapped to accuracy (0..1) by `scale * score + offset`, for a sub-net at one of
    `resolutions`. The MLP may be fitted to a smoother score than 0/1 accuracy (the mean probability of the true
    class); the linear map, fitted on the same pairs, then puts its output back in accuracy units."""

    def __init__(self, resolutions: Sequence[int], base_score: float = 0.0, scale: float = 1.0,
                 offset: float = 0.0) -> None:
        super().__init__()
        self.resolutions = check_resolutions(resolutions)
        dims = [feature_count(len(self.resolutions))] + [HIDDEN] * LAYERS
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(HIDDEN, 1))
        self.register_buffer("base_accuracy", torch.tensor(float(base_score)))  # the score's training mean
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("offset", torch.tensor(float(offset)))
        self.metrics: dict = {}

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted score (before the map to accuracy)."""
        return self.mlp(x).squeeze(1) + self.base_accuracy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x) * self.scale + self.offset

    @torch.no_grad()
    def predict(self, genes: np.ndarray) -> np.ndarray:
        """Predicted accuracy of gene rows whose resolution index refers to `self.resolutions`."""
        return self(torch.from_numpy(features(genes, len(self.resolutions)))).numpy()

    def check_resolutions(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """The requested resolutions if the predictor knows them all, else a TinyTLError naming the ones it knows."""
        resolutions = check_resolutions(resolutions)
        unknown = [r for r in resolutions if r not in self.resolutions]
        if unknown:
            raise TinyTLError(f"the accuracy predictor was trained at resolutions {list(self.resolutions)}; "
                              f"it cannot rank {unknown} (collect pairs there and retrain it)")
        return resolutions


def shown_accuracy(raw: float) -> float:
    """A raw predictor output as the accuracy a user reads (0..1): the MLP ranks on raw values, which may overshoot."""
    return min(max(float(raw), 0.0), 1.0)


TARGETS = ("accuracy", "p_correct")


def pair_scores(pairs: Sequence[dict], key: str) -> np.ndarray:
    """The pairs' `key` score (accuracy, p_correct) as float32, or one error line when some pair lacks it."""
    if any(key not in p for p in pairs):
        raise TinyTLError(f"some pairs have no {key!r} score (pairs collected before it was recorded: "
                          f"collect them again or train on accuracy)")
    return np.array([float(p[key]) for p in pairs], dtype=np.float32)


def pairs_to_arrays(pairs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Gene rows, accuracies and the resolution list of collected pairs."""
    if len(pairs) < 5:
        raise TinyTLError(f"need at least 5 accuracy pairs to train a predictor, got {len(pairs)}")
    resolutions = check_resolutions([int(p["resolution"]) for p in pairs])
    genes = np.stack([encode(parse_subnet(p["subnet"]), int(p["resolution"]), resolutions) for p in pairs])
    return genes, pair_scores(pairs, "accuracy"), resolutions


def heldout_metrics(pred: np.ndarray, truth: np.ndarray, fit_truth: np.ndarray, res_fit: np.ndarray,
                    res_test: np.ndarray, resolutions: Sequence[int]) -> dict:
    """RMSE and Kendall tau of predictions on held-out pairs (overall and within each resolution, the ranking a
    search needs once it has picked the resolution), beside two baselines a useful predictor must beat: the
    training mean and each resolution's training mean (the overall mean where a resolution has no training pair)."""
    by_res = {r: fit_truth[res_fit == r].mean() if (res_fit == r).any() else fit_truth.mean() for r in set(res_test)}
    res_mean = np.array([by_res[r] for r in res_test], dtype=np.float32)

    def tau(guess: np.ndarray) -> float:
        return float(kendalltau(guess, truth).statistic) if len(truth) > 1 else float("nan")

    per_res = {int(resolutions[r]): float(kendalltau(pred[res_test == r], truth[res_test == r]).statistic)
               for r in sorted(set(res_test)) if (res_test == r).sum() > 1}
    per_res = {r: t for r, t in per_res.items() if np.isfinite(t)}
    return {"rmse": float(np.sqrt(np.mean((pred - truth) ** 2))),
            "mean_rmse": float(np.sqrt(np.mean((fit_truth.mean() - truth) ** 2))),
            "resolution_mean_rmse": float(np.sqrt(np.mean((res_mean - truth) ** 2))),
            "kendall_tau": tau(pred), "resolution_mean_kendall_tau": tau(res_mean),
            "within_resolution_kendall_tau": float(np.mean(list(per_res.values()))) if per_res else float("nan"),
            "kendall_tau_by_resolution": {str(r): t for r, t in per_res.items()}}


def _fit(x: torch.Tensor, acc: np.ndarray, score: np.ndarray, fit: np.ndarray, resolutions: tuple[int, ...],
         seed: int, epochs: int, lr: float, weight_decay: float, calibrate: bool) -> AccuracyPredictor:
    """A predictor fitted to `score` on the feature rows `fit` of `x`, with the linear map from score to accuracy
    on those rows (accuracy ~ scale * score + offset; the identity when the score is accuracy)."""
    scale, offset = np.polyfit(score[fit], acc[fit], 1) if calibrate else (1.0, 0.0)
    torch.manual_seed(seed)
    model = AccuracyPredictor(resolutions, float(score[fit].mean()), float(scale), float(offset))
    y = torch.from_numpy(score[fit])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model.score(x[fit]), y).backward()
        optimizer.step()
    return model


def train_predictor(pairs: Sequence[dict], seed: int = 0, epochs: int = 300, lr: float = 1e-3,
                    weight_decay: float = 1e-4, test_fraction: float = 0.2, target: str = "accuracy",
                    cv_folds: int = 0) -> AccuracyPredictor:
    """Fit the MLP to the pairs' `target` score on 80% of the pairs (seeded split) and
    the linear map from that score to accuracy on the same 80%; `.metrics` holds `heldout_metrics` against the
    other 20%'s accuracy, and, for a target other than accuracy, against their target score too. With
    `cv_folds` > 1 the same recipe is also cross-validated over that many folds (`.metrics["cross_validated"]`,
    fold means): one 90-pair split ranks with a standard error of about 0.08 in tau, the folds' mean less.
    Accuracy is the default target: on 1,200 pairs it ranks held-out accuracy better than p(correct) does, which
    ranks p(correct) (docs/BENCHMARKS.md)."""
    if target not in TARGETS:
        raise TinyTLError(f"unknown predictor target {target!r}; choose from {', '.join(TARGETS)}")
    genes, acc, resolutions = pairs_to_arrays(pairs)
    score = pair_scores(pairs, target)
    x = torch.from_numpy(features(genes, len(resolutions)))
    res = genes[:, R_GENE]
    order = np.random.default_rng(seed).permutation(len(acc))
    n_test = max(1, round(test_fraction * len(acc)))

    def fit_and_score(test: np.ndarray, fit: np.ndarray, fold_seed: int) -> tuple[AccuracyPredictor, dict, dict]:
        model = _fit(x, acc, score, fit, resolutions, fold_seed, epochs, lr, weight_decay, target != "accuracy")
        with torch.no_grad():
            fitted = model.score(x[test]).numpy()
        on_acc = heldout_metrics(fitted * model.scale.numpy() + model.offset.numpy(), acc[test], acc[fit],
                                 res[fit], res[test], resolutions)
        return model, on_acc, heldout_metrics(fitted, score[test], score[fit], res[fit], res[test], resolutions)

    model, on_acc, on_target = fit_and_score(order[:n_test], order[n_test:], seed)
    model.metrics = {**on_acc, "target": target, "train_pairs": len(acc) - n_test, "test_pairs": int(n_test),
                     "seed": seed, "epochs": epochs, "resolutions": list(resolutions)}
    if target != "accuracy":
        model.metrics["calibration"] = {"scale": float(model.scale), "offset": float(model.offset)}
        model.metrics["on_target"] = on_target
    if cv_folds > 1:
        folds = [fit_and_score(order[k::cv_folds], np.concatenate([order[j::cv_folds] for j in range(cv_folds)
                                                                   if j != k]), seed + k)
                 for k in range(cv_folds)]
        keys = ("rmse", "mean_rmse", "resolution_mean_rmse", "kendall_tau", "within_resolution_kendall_tau")
        model.metrics["cross_validated"] = {"folds": cv_folds, **{k: float(np.mean([f[1][k] for f in folds]))
                                                                  for k in keys}}
        if target != "accuracy":
            model.metrics["cross_validated"]["on_target_within_resolution_kendall_tau"] = float(
                np.mean([f[2]["within_resolution_kendall_tau"] for f in folds]))
    return model


RANKING_TAU = 0.4  # within-resolution Kendall tau below which nearby sub-nets at one resolution may swap


def within_resolution_tau(metrics: dict) -> tuple[float, str]:
    """The within-resolution Kendall tau to trust (cross-validated where recorded) and what it was measured on."""
    folds = metrics.get("cross_validated")
    if folds:
        return folds["within_resolution_kendall_tau"], f"{folds['folds']}-fold cross-validated"
    return metrics.get("within_resolution_kendall_tau", float("nan")), f"{metrics['test_pairs']} held-out pairs"


def quality_warning(metrics: dict) -> str | None:
    """What a user must know when the predictor does not beat a baseline on its held-out pairs, or ranks sub-nets
    inside one resolution only loosely, else None."""
    if not metrics["rmse"] < metrics["mean_rmse"]:
        return "it does not beat predicting the mean accuracy on its held-out pairs: its ranking is noise"
    if not metrics["rmse"] < metrics.get("resolution_mean_rmse", float("inf")):
        return ("it does not beat predicting each resolution's mean accuracy on its held-out pairs: it ranks "
                "resolutions, not sub-nets within one resolution")
    tau, measured = within_resolution_tau(metrics)
    if tau < RANKING_TAU:
        return (f"inside one resolution it ranks sub-nets only loosely (Kendall tau {tau:.2f}, {measured}): "
                "points at one resolution within about a point of each other may be in either order")
    return None


def save_predictor(model: AccuracyPredictor, path: str | Path, provenance: dict) -> None:
    """Weights, resolutions, held-out metrics and where the pairs came from."""
    save_file({"state_dict": model.state_dict(), "resolutions": list(model.resolutions), "metrics": model.metrics,
               "provenance": provenance}, path)


def _predictor_rules() -> tuple[dict[str, FieldRule], dict[str, FieldRule], dict[str, FieldRule]]:
    """What load_predictor checks in a file before it builds anything: top-level, metrics and provenance fields
    (search and the Pareto page read them)."""
    def resolution_list(v: object) -> bool:
        return (isinstance(v, (list, tuple)) and 0 < len(v) == len(set(v))
                and all(is_int_in(MIN_RESOLUTION, MAX_TRAIN_RESOLUTION)(r) for r in v))

    plain_dict = (lambda v: isinstance(v, dict) and is_json_like(v), "a dict of plain data")
    top = {"state_dict": (is_tensor_dict, "a state dict (name -> tensor)"),
           "resolutions": (resolution_list, f"a list of distinct integers in {MIN_RESOLUTION}..{MAX_TRAIN_RESOLUTION}"),
           "metrics": plain_dict, "provenance": plain_dict}
    metrics = {**{k: (lambda v: is_number(v, low=0.0), "a finite number >= 0")
                  for k in ("rmse", "mean_rmse", "resolution_mean_rmse")},
               **{k: (lambda v: is_number(v, finite=False, low=-1.0, high=1.0), "a number in -1..1 (or NaN)")
                  for k in ("kendall_tau", "resolution_mean_kendall_tau", "within_resolution_kendall_tau")},
               **{k: (is_int_in(0), "an integer >= 0") for k in ("test_pairs", "train_pairs")}}
    provenance = {"classes": (is_int_in(1, MAX_CLASSES), f"an integer in 1..{MAX_CLASSES}")}
    return top, metrics, provenance


def load_predictor(path: str | Path | None = None) -> AccuracyPredictor:
    """Load a stored predictor (default: the shipped data/supernet_predictor.pt), every field it uses checked."""
    what = "accuracy predictor"
    path = check_input_file(path if path else DEFAULT_PREDICTOR, what,
                            "train it with `python -m tinytl collect --train-predictor` or pass --predictor PATH")
    ckpt = load_file(path, what, ("state_dict", "resolutions", "metrics"))
    top, metrics, provenance = _predictor_rules()
    check_fields(ckpt, top, path, what)
    check_fields(ckpt["metrics"], metrics, path, what, ("rmse", "mean_rmse", "kendall_tau", "test_pairs"),
                 "metrics.")
    check_fields(ckpt.get("provenance", {}), provenance, path, what, prefix="provenance.")
    model = AccuracyPredictor(ckpt["resolutions"])
    state = {"scale": model.scale, "offset": model.offset, **ckpt["state_dict"]}  # files from before the map
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise TinyTLError(f"accuracy predictor {path} does not fit this predictor's layout") from None
    model.metrics, model.provenance = ckpt["metrics"], ckpt.get("provenance", {})
    return model.eval()
