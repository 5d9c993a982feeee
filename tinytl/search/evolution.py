"""Memory-constrained evolutionary search over sub-nets and resolutions (OFA's algorithm, docs/PAPER.md).

Every candidate is priced by the analytic sub-net memory before it may join the population, so the whole
run stays inside the budget. An unreachable budget is refused up front (the smallest reachable memory is
computed exactly), and every sampling loop is bounded: where too few feasible children turn up, parents
fill the population instead of the loop spinning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tinytl.errors import TinyTLError
from tinytl.models.supernet import smallest_subnet
from tinytl.search.memory import MemoryTable, memory_table
from tinytl.search.predictor import AccuracyPredictor, shown_accuracy
from tinytl.search.space import ARCH_CHOICES, NUM_GENES, R_GENE, canonical_genes, decode, encode, random_genes

MAX_ROUNDS = 20  # sampling rounds before a shortfall is filled from feasible parents


@dataclass(frozen=True)
class SearchSettings:
    """Once-for-All's values: population 100, 500 iterations, top 25 kept, 50 mutants + 50 crossovers."""

    population: int = 100
    iterations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    arch_mutate_prob: float = 0.1
    resolution_mutate_prob: float = 0.5
    seed: int = 0


def unreachable_message(budget_mb: float, smallest_mb: float, resolution: int) -> str:
    return (f"budget {budget_mb:g} MB is unreachable: the smallest reachable training memory is "
            f"{smallest_mb:.2f} MB (depth 2, expand 3, kernel 3 everywhere at {resolution} px)")


class _Pool:
    """Everything evaluated so far (canonical gene rows, memory, predicted accuracy), deduplicated at the end."""

    def __init__(self) -> None:
        self.genes: list[np.ndarray] = []
        self.memory: list[np.ndarray] = []
        self.accuracy: list[np.ndarray] = []

    def add(self, genes: np.ndarray, memory: np.ndarray, accuracy: np.ndarray) -> None:
        self.genes.append(canonical_genes(genes))
        self.memory.append(memory)
        self.accuracy.append(accuracy)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        genes, memory, acc = (np.concatenate(a) for a in (self.genes, self.memory, self.accuracy))
        _, first = np.unique(genes, axis=0, return_index=True)
        return genes[first], memory[first], acc[first]


def pareto_front(memory: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (less or equal memory and higher accuracy), by memory."""
    order = np.lexsort((-accuracy, memory))
    best = np.maximum.accumulate(accuracy[order])
    keep = np.ones(len(order), bool)
    keep[1:] = accuracy[order][1:] > best[:-1]
    return order[keep]


def evolve(table: MemoryTable, predictor: AccuracyPredictor, budget_mb: float, batch_size: int, frozen_bits: int,
           settings: SearchSettings = SearchSettings(),
           progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the search; return the deduplicated (genes, memory MB, predicted accuracy) of every feasible candidate."""
    rng = np.random.default_rng(settings.seed)
    n_res = len(table.resolutions)
    res_map = np.array([predictor.resolutions.index(r) for r in table.resolutions])

    def memory(genes: np.ndarray) -> np.ndarray:
        return table.total_bytes(genes, batch_size, frozen_bits) / 1e6

    def predict(genes: np.ndarray) -> np.ndarray:
        mapped = genes.copy()
        mapped[:, R_GENE] = res_map[genes[:, R_GENE]]
        return predictor.predict(mapped)

    def feasible(make: Callable[[int], np.ndarray], n: int, fallback: np.ndarray) -> np.ndarray:
        found, count = [], 0
        for _ in range(MAX_ROUNDS):
            cand = make(2 * n)
            cand = cand[memory(cand) <= budget_mb]
            found.append(cand)
            count += len(cand)
            if count >= n:
                break
        out = np.concatenate(found)[:n]
        if len(out) < n:
            out = np.concatenate([out, fallback[rng.integers(0, len(fallback), n - len(out))]])
        return out

    smallest = np.stack([encode(smallest_subnet(), r, table.resolutions) for r in table.resolutions])
    seed_rows = smallest[memory(smallest) <= budget_mb]
    population = feasible(lambda n: random_genes(rng, n, n_res), settings.population, seed_rows)
    pool = _Pool()
    accuracy = predict(population)
    pool.add(population, memory(population), accuracy)
    n_parents = int(round(settings.parent_ratio * settings.population))
    n_mutants = int(round(settings.mutation_ratio * settings.population))
    n_cross = settings.population - n_parents - n_mutants
    choices = np.append(ARCH_CHOICES, n_res)
    probs = np.append(np.full(NUM_GENES - 1, settings.arch_mutate_prob), settings.resolution_mutate_prob)

    for it in range(settings.iterations):
        top = np.argsort(-accuracy, kind="stable")[:n_parents]
        parents = population[top]

        def mutate(n: int) -> np.ndarray:
            base = parents[rng.integers(0, len(parents), n)]
            fresh = (rng.random((n, NUM_GENES)) * choices).astype(np.int64)
            return np.where(rng.random((n, NUM_GENES)) < probs, fresh, base)

        def cross(n: int) -> np.ndarray:
            a = parents[rng.integers(0, len(parents), n)]
            b = parents[rng.integers(0, len(parents), n)]
            return np.where(rng.random((n, NUM_GENES)) < 0.5, a, b)

        children = np.concatenate([feasible(mutate, n_mutants, parents), feasible(cross, n_cross, parents)])
        child_acc = predict(children)
        pool.add(children, memory(children), child_acc)
        population = np.concatenate([parents, children])
        accuracy = np.concatenate([accuracy[top], child_acc])
        if progress:
            progress(it + 1, settings.iterations)
    return pool.arrays()


def point(genes: np.ndarray, memory_mb: float, accuracy: float, resolutions: Sequence[int]) -> dict:
    """JSON-ready search point."""
    config, resolution = decode(genes, resolutions)
    return {"subnet": config.to_dict(), "resolution": int(resolution), "memory_mb": float(memory_mb),
            "predicted_accuracy": shown_accuracy(accuracy)}


def search_subnets(budget_mb: float, predictor: AccuracyPredictor, policy: str = "lite+bias", batch_size: int = 8,
                   num_classes: int = 10, resolutions: Sequence[int] | None = None, frozen_bits: int = 8,
                   settings: SearchSettings = SearchSettings(),
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Best predicted accuracy under a training-memory budget: the front, the best point, predictor quality."""
    if not budget_mb > 0:
        raise TinyTLError(f"budget must be > 0 MB, got {budget_mb!r}")
    resolutions = predictor.check_resolutions(resolutions or predictor.resolutions)
    table = memory_table(resolutions, num_classes, policy)
    smallest_bytes, smallest_res = table.smallest_bytes(batch_size, frozen_bits)
    if smallest_bytes / 1e6 > budget_mb:
        raise TinyTLError(unreachable_message(budget_mb, smallest_bytes / 1e6, smallest_res))
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 100-row MLP products: extra threads only add sync cost on busy shared cores
    try:
        genes, memory, accuracy = evolve(table, predictor, budget_mb, batch_size, frozen_bits, settings, progress)
    finally:
        torch.set_num_threads(threads)
    front_rows = pareto_front(memory, accuracy)
    front = [point(genes[i], memory[i], accuracy[i], resolutions) for i in front_rows]
    best = max(front_rows, key=lambda i: accuracy[i])
    return {"budget_mb": budget_mb, "policy": policy, "batch_size": batch_size, "classes": num_classes,
            "frozen_bits": frozen_bits, "resolutions": list(resolutions), "smallest_mb": smallest_bytes / 1e6,
            "front": front, "best": point(genes[best], memory[best], accuracy[best], resolutions),
            "predictor": dict(predictor.metrics),
            "search": {"population": settings.population, "iterations": settings.iterations,
                       "parent_ratio": settings.parent_ratio, "mutation_ratio": settings.mutation_ratio,
                       "arch_mutate_prob": settings.arch_mutate_prob,
                       "resolution_mutate_prob": settings.resolution_mutate_prob, "seed": settings.seed,
                       "evaluated": int(len(genes)), "seconds": round(time.perf_counter() - started, 3)}}


def random_points(predictor: AccuracyPredictor, count: int, policy: str = "lite+bias", batch_size: int = 8,
                  num_classes: int = 10, frozen_bits: int = 8, seed: int = 0) -> list[dict]:
    """`count` random sub-nets at the predictor's resolutions with their memory and predicted accuracy."""
    table = memory_table(predictor.resolutions, num_classes, policy)
    genes = random_genes(np.random.default_rng(seed), count, len(table.resolutions))
    memory = table.total_bytes(genes, batch_size, frozen_bits) / 1e6
    return [point(g, m, a, table.resolutions) for g, m, a in zip(genes, memory, predictor.predict(genes))]
