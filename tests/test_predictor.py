"""Accuracy predictor: one-hot features, 80/20 held-out metrics, beats the mean, save/load, the shipped one."""

import json
import random

import numpy as np
import pytest
import torch

from tinytl import TinyTLError
from tinytl.models.supernet import parse_subnet, sample_subnet
from tinytl.search.predictor import (DEFAULT_PREDICTOR, feature_count, features, load_predictor, pairs_to_arrays,
                                     quality_warning, save_predictor, train_predictor)
from tinytl.search.space import encode


def synthetic_pairs(n, resolutions=(32, 48, 64), seed=0):
    """Accuracy that grows with depth, width and resolution, plus noise: a rankable target."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        c, r = sample_subnet(rng), rng.choice(resolutions)
        acc = 0.7 + 0.01 * sum(c.d) + 0.002 * sum(c.e[s] for s in c.active_slots()) + r / 2000 + rng.gauss(0, .005)
        pairs.append({"subnet": c.to_dict(), "resolution": r, "accuracy": acc})
    return pairs


def test_features_one_hot_and_zero_beyond_depth():
    config = parse_subnet({"d": [2, 3, 4, 2, 2], "e": [3, 4, 6, 6] * 5, "ks": [7, 5, 3, 3] * 5})
    x = features(encode(config, 48, (32, 48))[None, :], 2)[0]
    assert x.shape == (feature_count(2),) == (2 + 120 * 3,) and list(x[:2]) == [0, 1]
    blocks, at_32, at_48 = x[2:].reshape(3, 120)
    assert not at_32.any() and (at_48 == blocks).all()  # the blocks again, in the row's resolution's copy only
    slots = blocks.reshape(20, 6)
    for slot in range(20):
        active = slot in config.active_slots()
        assert slots[slot].sum() == (2 if active else 0)
    assert list(slots[0]) == [0, 0, 1, 1, 0, 0]  # kernel 7, expand 3


def test_predictor_beats_mean_and_round_trips(tmp_path):
    pairs = synthetic_pairs(150)
    model = train_predictor(pairs, epochs=200)
    m = model.metrics
    assert m["train_pairs"] == 120 and m["test_pairs"] == 30
    assert m["rmse"] < m["mean_rmse"] and m["kendall_tau"] > 0.3
    save_predictor(model, tmp_path / "p.pt", {"classes": 10})
    loaded = load_predictor(tmp_path / "p.pt")
    genes, _, _ = pairs_to_arrays(pairs)
    np.testing.assert_allclose(loaded.predict(genes), model.predict(genes))
    assert loaded.metrics == m and loaded.provenance == {"classes": 10}


def test_resolution_mean_baseline_and_quality_warning():
    """Accuracy set by depth: the predictor beats both baselines; set by resolution only: it cannot beat the
    per-resolution mean, and the warning says it ranks resolutions."""
    by_depth = train_predictor(synthetic_pairs(150), epochs=200).metrics
    assert by_depth["rmse"] < by_depth["resolution_mean_rmse"] < by_depth["mean_rmse"]
    assert quality_warning(by_depth) is None
    rng = random.Random(1)
    by_res = [{**p, "accuracy": p["resolution"] / 100 + rng.gauss(0, 0.01)} for p in synthetic_pairs(150)]
    m = train_predictor(by_res, epochs=200).metrics
    assert m["resolution_mean_rmse"] < m["rmse"] < m["mean_rmse"]
    assert "ranks resolutions" in quality_warning(m)
    assert "noise" in quality_warning({**m, "rmse": m["mean_rmse"]})
    loose = {**by_depth, "within_resolution_kendall_tau": 0.9, "cross_validated": {
        "folds": 5, "within_resolution_kendall_tau": 0.25}}  # the cross-validated figure is the one trusted
    assert "only loosely (Kendall tau 0.25, 5-fold cross-validated)" in quality_warning(loose)
    assert "0.30, 30 held-out pairs" in quality_warning({**by_depth, "within_resolution_kendall_tau": 0.3})


def test_predictor_refuses_unknown_resolutions_and_few_pairs():
    model = train_predictor(synthetic_pairs(20), epochs=5)
    with pytest.raises(TinyTLError, match="trained at resolutions"):
        model.check_resolutions([224])
    with pytest.raises(TinyTLError, match="at least 5"):
        train_predictor(synthetic_pairs(3))



def test_shipped_predictor_beats_the_mean_and_its_metrics_reproduce(one_thread):
    """The shipped predictor's recorded held-out metrics beat the mean and follow from the shipped pairs (trained
    on one thread, as `collect` trains it: float sums in another order fit a slightly different MLP)."""
    shipped = load_predictor()
    m = shipped.metrics
    assert m["rmse"] < m["mean_rmse"] and m["kendall_tau"] > 0
    assert quality_warning(m) is None  # beats both baselines and ranks inside a resolution at tau >= 0.4
    pairs = json.loads((DEFAULT_PREDICTOR.parent / "supernet_pairs.json").read_text())["pairs"]
    assert m["train_pairs"] + m["test_pairs"] == len(pairs) == shipped.provenance["pairs"]
    again = train_predictor(pairs, seed=m["seed"], epochs=m["epochs"], target=m.get("target", "accuracy")).metrics
    assert again["rmse"] == pytest.approx(m["rmse"], rel=1e-3)
    assert again["mean_rmse"] == pytest.approx(m["mean_rmse"], rel=1e-6)
    assert again["kendall_tau"] == pytest.approx(m["kendall_tau"], abs=1e-6)
    assert again["within_resolution_kendall_tau"] == pytest.approx(m["within_resolution_kendall_tau"], abs=1e-6)


def test_within_resolution_tau_ranks_sub_nets_inside_each_resolution():
    """Accuracy set by depth inside every resolution: the per-resolution ranking is recorded and positive;
    shuffled accuracies inside each resolution rank near zero."""
    m = train_predictor(synthetic_pairs(200), epochs=200).metrics
    assert set(m["kendall_tau_by_resolution"]) == {"32", "48", "64"}
    assert m["within_resolution_kendall_tau"] == pytest.approx(np.mean(list(m["kendall_tau_by_resolution"].values())))
    assert m["within_resolution_kendall_tau"] > 0.4
    rng = random.Random(2)
    noise = [{**p, "accuracy": p["resolution"] / 100 + rng.gauss(0, 0.01)} for p in synthetic_pairs(200)]
    assert abs(train_predictor(noise, epochs=200).metrics["within_resolution_kendall_tau"]) < 0.3


def _binomial_pairs(n, images=300, seed=0):
    """Sub-nets whose true quality grows with depth, scored on `images` validation images: accuracy is a
    binomial draw around it, p(correct) the same quality with a tenth of that noise, on another scale."""
    rng = np.random.default_rng(seed)
    pairs = synthetic_pairs(n, seed=seed)
    for p in pairs:
        quality = 0.88 + 0.004 * sum(parse_subnet(p["subnet"]).d)
        p["accuracy"] = rng.binomial(images, quality) / images
        p["p_correct"] = 0.9 * quality - 0.05 + rng.normal(0, 0.1 * np.sqrt(quality * (1 - quality) / images))
    return pairs


def test_p_correct_target_predicts_in_accuracy_units_and_ranks_better():
    """Fitted to the smoother score, the predictor still outputs accuracy (the linear map), records both metric
    blocks, and ranks held-out accuracy within each resolution better than the one fitted to noisy accuracy."""
    pairs = _binomial_pairs(300)
    soft = train_predictor(pairs, epochs=200, target="p_correct")
    assert soft.metrics["target"] == "p_correct"
    cal = soft.metrics["calibration"]
    assert cal["scale"] == pytest.approx(1 / 0.9, rel=0.3)  # noisy accuracy on p(correct): slope ~1/0.9
    genes, acc, _ = pairs_to_arrays(pairs)
    assert abs(float(soft.predict(genes).mean()) - float(acc.mean())) < 0.005  # accuracy units, not p(correct)'s
    assert soft.metrics["on_target"]["within_resolution_kendall_tau"] > soft.metrics["within_resolution_kendall_tau"]
    hard = train_predictor(pairs, epochs=200, target="accuracy")
    assert "calibration" not in hard.metrics and hard.metrics["target"] == "accuracy"
    assert soft.metrics["within_resolution_kendall_tau"] > hard.metrics["within_resolution_kendall_tau"]
    assert soft.metrics["rmse"] < soft.metrics["resolution_mean_rmse"]


def test_cross_validation_reports_fold_means_without_changing_the_split_metrics():
    pairs = _binomial_pairs(200)
    plain = train_predictor(pairs, epochs=100, target="p_correct").metrics
    cv = train_predictor(pairs, epochs=100, target="p_correct", cv_folds=4).metrics
    assert {k: v for k, v in cv.items() if k != "cross_validated"} == plain
    folds = cv["cross_validated"]
    assert folds["folds"] == 4 and folds["rmse"] < folds["mean_rmse"]
    assert 0 < folds["within_resolution_kendall_tau"] < folds["on_target_within_resolution_kendall_tau"] <= 1


def test_p_correct_target_needs_every_pair_to_record_it(tmp_path):
    pairs = _binomial_pairs(20)
    del pairs[3]["p_correct"]
    assert train_predictor(pairs, epochs=5).metrics["target"] == "accuracy"  # the default needs no p(correct)
    with pytest.raises(TinyTLError, match="no 'p_correct' score"):
        train_predictor(pairs, epochs=5, target="p_correct")
    with pytest.raises(TinyTLError, match="unknown predictor target"):
        train_predictor(pairs, epochs=5, target="loss")


def test_a_predictor_file_from_before_the_accuracy_map_loads_as_the_identity_map(tmp_path):
    model = train_predictor(synthetic_pairs(40), epochs=20)
    save_predictor(model, tmp_path / "p.pt", {"classes": 10})
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    for key in ("scale", "offset"):
        del ckpt["state_dict"][key]
    torch.save(ckpt, tmp_path / "old.pt")
    old = load_predictor(tmp_path / "old.pt")
    genes, _, _ = pairs_to_arrays(synthetic_pairs(40))
    np.testing.assert_allclose(old.predict(genes), model.predict(genes), rtol=1e-6)
