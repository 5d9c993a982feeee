"""Analytic sub-net memory equals the layer walk of the extracted sub-net, and it is monotone where it claims."""

import random

import numpy as np
import pytest

from tinytl import TinyTLError
from tinytl.memory import profile_memory
from tinytl.models.supernet import largest_subnet, sample_subnet, smallest_subnet
from tinytl.policies import POLICIES
from tinytl.search.memory import memory_table, subnet_memory_bytes
from tinytl.search.space import decode, random_genes
from tinytl.models.setting import ModelSetting

CASES = [(largest_subnet(), 224, "lite+bias", 8, 102), (smallest_subnet(), 160, "bias", 1, 10)]
rng = random.Random(7)
CASES += [(sample_subnet(rng), r, p, b, c) for r, p, b, c in
          [(33, "full", 8, 10), (97, "last", 4, 102), (128, "norm+last", 8, 10), (64, "lite", 2, 37),
           (48, "lite+bias", 8, 10), (250, "lite+bias", 16, 1000)]]


@pytest.mark.parametrize("config,resolution,policy,batch,classes", CASES)
def test_analytic_equals_walk(config, resolution, policy, batch, classes):
    report = profile_memory(ModelSetting("supernet", resolution, classes, subnet=config),
                            policy=policy, batch_size=batch)
    assert subnet_memory_bytes(config, resolution, policy, batch, classes) == report.total_bytes


@pytest.mark.parametrize("norm,lite", [("bn", True), ("gn", False), ("bn-frozen", False)])
def test_analytic_equals_walk_other_builds(norm, lite):
    config = sample_subnet(random.Random(11))
    for policy in ("full", "bias"):
        report = profile_memory(ModelSetting("supernet", 96, 10, lite, norm, config), policy=policy, batch_size=8)
        assert subnet_memory_bytes(config, 96, policy, 8, 10, lite_residual=lite, norm=norm) == report.total_bytes


def test_vectorised_rows_equal_single_lookups():
    resolutions = (32, 48, 160)
    table = memory_table(resolutions, 10, "lite+bias")
    genes = random_genes(np.random.default_rng(0), 50, len(resolutions))
    totals = table.total_bytes(genes, 8, 8)
    for row, total in zip(genes[:10], totals[:10]):
        config, res = decode(row, resolutions)
        assert subnet_memory_bytes(config, res, "lite+bias", 8, 10) == total


@pytest.mark.parametrize("policy", POLICIES)
def test_smallest_reachable_is_a_lower_bound(policy):
    resolutions = (32, 64, 128)
    table = memory_table(resolutions, 10, policy)
    smallest, res = table.smallest_bytes(8, 8)
    assert res == 32 and smallest == subnet_memory_bytes(smallest_subnet(), 32, policy, 8, 10)
    genes = random_genes(np.random.default_rng(1), 2000, len(resolutions))
    assert table.total_bytes(genes, 8, 8).min() >= smallest


def test_bad_settings_raise():
    with pytest.raises(TinyTLError, match="canonical policies"):
        memory_table((64,), 10, "custom:classifier.*")
    with pytest.raises(TinyTLError, match="resolutions"):
        memory_table((16,), 10, "bias")
    with pytest.raises(TinyTLError, match="batch size"):
        subnet_memory_bytes(smallest_subnet(), 64, batch_size=0)
