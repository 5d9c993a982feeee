"""Accuracy predictor (docs/PAPER.md): one-hot features, an MLP of 3 x 400, plus a constant base accuracy.

Features: one-hot of the resolution, then per block slot a one-hot of kernel (3) and of expand (3), all
zero for slots beyond a stage's depth. Trained on [sub-net, resolution, accuracy] pairs with an 80/20 split;
held-out RMSE, Kendall tau over all held-out pairs and within each resolution (the ranking a search needs),
and the same for two baselines are kept with the weights.
"""

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


def features(genes: np.ndarray, num_resolutions: int) -> np.ndarray:
    """[n, R + 20 * 6] float32 one-hot encoding of gene rows."""
    n = len(genes)
    active = active_mask(genes)[:, :, None]
    kernel = np.eye(len(KERNELS), dtype=np.float32)[genes[:, K_GENES]] * active  # [n, 20, 3]
    expand = np.eye(len(EXPANDS), dtype=np.float32)[genes[:, E_GENES]] * active
    res = np.eye(num_resolutions, dtype=np.float32)[genes[:, R_GENE]]
    return np.concatenate([res, np.concatenate([kernel, expand], axis=2).reshape(n, NUM_SLOTS * 6)], axis=1)


class AccuracyPredictor(nn.Module):
    """MLP(features) + base accuracy; accuracy in 0..1 for a sub-net at one of `resolutions`."""

    def __init__(self, resolutions: Sequence[int], base_accuracy: float = 0.0) -> None:
        super().__init__()
        self.resolutions = check_resolutions(resolutions)
        dims = [len(self.resolutions) + NUM_SLOTS * 6] + [HIDDEN] * LAYERS
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(HIDDEN, 1))
        self.register_buffer("base_accuracy", torch.tensor(float(base_accuracy)))
        self.metrics: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(1) + self.base_accuracy

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


def pairs_to_arrays(pairs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Gene rows, accuracies and the resolution list of collected pairs."""
    if len(pairs) < 5:
        raise TinyTLError(f"need at least 5 accuracy pairs to train a predictor, got {len(pairs)}")
    resolutions = check_resolutions([int(p["resolution"]) for p in pairs])
    genes = np.stack([encode(parse_subnet(p["subnet"]), int(p["resolution"]), resolutions) for p in pairs])
    return genes, np.array([float(p["accuracy"]) for p in pairs], dtype=np.float32), resolutions


def train_predictor(pairs: Sequence[dict], seed: int = 0, epochs: int = 300, lr: float = 1e-3,
                    weight_decay: float = 1e-4, test_fraction: float = 0.2) -> AccuracyPredictor:
    """Fit on 80% of the pairs (seeded split), report RMSE / Kendall tau on the other 20% in `.metrics`, beside
    two baselines on the same pairs: the training mean, and each resolution's training mean."""
    genes, acc, resolutions = pairs_to_arrays(pairs)
    order = np.random.default_rng(seed).permutation(len(acc))
    n_test = max(1, round(test_fraction * len(acc)))
    test, fit = order[:n_test], order[n_test:]
    torch.manual_seed(seed)
    model = AccuracyPredictor(resolutions, float(acc[fit].mean()))
    x = torch.from_numpy(features(genes, len(resolutions)))
    y = torch.from_numpy(acc)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x[fit]), y[fit])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pred = model(x[test]).numpy()
    truth = acc[test]
    # the baseline a useful predictor must beat: each resolution's mean training accuracy (the overall mean
    # where a resolution has no training pair)
    res = genes[:, R_GENE]
    by_res = {r: acc[fit][res[fit] == r].mean() if (res[fit] == r).any() else acc[fit].mean() for r in set(res)}
    res_mean = np.array([by_res[r] for r in res[test]], dtype=np.float32)

    def tau(guess: np.ndarray) -> float:
        return float(kendalltau(guess, truth).statistic) if n_test > 1 else float("nan")

    # ranking sub-nets within one resolution is what a search needs once it has picked the resolution
    per_res = {int(resolutions[r]): float(kendalltau(pred[res[test] == r], truth[res[test] == r]).statistic)
               for r in sorted(set(res[test])) if (res[test] == r).sum() > 1}
    per_res = {r: t for r, t in per_res.items() if np.isfinite(t)}

    model.metrics = {"rmse": float(np.sqrt(np.mean((pred - truth) ** 2))),
                     "mean_rmse": float(np.sqrt(np.mean((acc[fit].mean() - truth) ** 2))),
                     "resolution_mean_rmse": float(np.sqrt(np.mean((res_mean - truth) ** 2))),
                     "kendall_tau": tau(pred), "resolution_mean_kendall_tau": tau(res_mean),
                     "within_resolution_kendall_tau":
                         float(np.mean(list(per_res.values()))) if per_res else float("nan"),
                     "kendall_tau_by_resolution": {str(r): t for r, t in per_res.items()},
                     "train_pairs": int(len(fit)), "test_pairs": int(n_test),
                     "seed": seed, "epochs": epochs, "resolutions": list(resolutions)}
    return model


def quality_warning(metrics: dict) -> str | None:
    """What a user must know when the predictor does not beat a baseline on its held-out pairs, else None."""
    if not metrics["rmse"] < metrics["mean_rmse"]:
        return "it does not beat predicting the mean accuracy on its held-out pairs: its ranking is noise"
    if not metrics["rmse"] < metrics.get("resolution_mean_rmse", float("inf")):
        return ("it does not beat predicting each resolution's mean accuracy on its held-out pairs: it ranks "
                "resolutions, not sub-nets within one resolution")
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
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise TinyTLError(f"accuracy predictor {path} does not fit this predictor's layout") from None
    model.metrics, model.provenance = ckpt["metrics"], ckpt.get("provenance", {})
    return model.eval()
