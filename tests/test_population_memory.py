"""A population's memory: evaluation in member chunks (same metrics, bounded working space), and the
up-front estimate that refuses `train.seeds` / `--population` too large for the machine."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from ganlab.config import model_size
from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.population import cohort as cohort_module
from ganlab.population import population_evaluation
from ganlab.population.cohort import Cohort
from ganlab.population.member_settings import member_configs
from ganlab.population.population_evaluation import PopulationEvaluator


def _cohort(overrides: list[str], seeds: int) -> Cohort:
    cfg = compose_config([*overrides, f"train.seeds={seeds}", "train.iterations=4"])
    cohort = Cohort(member_configs(cfg))
    for _ in range(3):
        cohort.train_iteration()
    return cohort


@pytest.mark.parametrize("overrides", [[], ["data=ring8"]])
def test_evaluating_a_few_members_at_a_time_gives_the_same_metrics(monkeypatch, overrides):
    cohort = _cohort([*overrides, "train.eval_samples=2048"], 5)
    evaluator = PopulationEvaluator(cohort, 2048, 0)
    whole_rows, whole_samples = evaluator.evaluate(cohort)
    # chunks of 2 members for G and D (5 = 2 + 2 + 1) and 1 member for the metrics
    monkeypatch.setattr(cohort_module, "EVAL_CHUNK_BYTES", 2 * 2048 * cohort.ema.widest_layer * 4 * 2)
    monkeypatch.setattr(population_evaluation, "METRIC_CHUNK_BYTES", 1)
    rows, samples = evaluator.evaluate(cohort)
    # a chunk's batched matrix products may round differently from the whole stack's (float32)
    np.testing.assert_allclose(samples, whole_samples, rtol=1e-5, atol=1e-5)
    assert len(rows) == 5
    spread = whole_samples.std(axis=1).min(axis=1)
    assert (spread > 1e-2).sum() >= 2  # members whose metrics are not dominated by that rounding
    for row, whole, wide in zip(rows, whole_rows, spread > 1e-2, strict=True):
        assert row.keys() == whole.keys()
        for key in row if wide else ():
            assert row[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-6, nan_ok=True), key


def test_evaluation_chunks_on_cpu_keep_their_fixed_budget():
    import torch

    assert cohort_module.chunk_budget(torch.device("cpu"), 123) == 123  # the GPU's share: tests/test_cuda.py


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_evaluating_a_2d_population_stays_within_a_memory_bound():
    """ring8's metrics project every sample on 64 axes and sort them: 15 MB a member at 10,000 samples,
    ~1 GB for these 64 members at once. Chunked, evaluation may add at most about two chunk budgets."""
    cohort = _cohort(["data=ring8"], 64)
    evaluator = PopulationEvaluator(cohort, 10_000, 0)
    evaluator.evaluate(cohort)  # warm: the allocators' caches

    def peak_mb() -> float:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

    def resident_mb() -> float:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

    Path("/proc/self/clear_refs").write_text("5")  # reset this process's peak resident memory
    before = resident_mb()
    rows, _ = evaluator.evaluate(cohort)
    assert len(rows) == 64 and all(np.isfinite(row["sliced_w1"]) for row in rows)
    assert peak_mb() - before < 256 + 256 + 100, (before, peak_mb())  # G/D's and the metrics' chunk budgets


def _fit_limit(overrides: list[str], free_gib: float, monkeypatch) -> int:
    from ganlab.config import validate

    monkeypatch.setattr(validate, "available_memory_bytes", lambda: int(free_gib * 2**30))
    with pytest.raises(ConfigError) as err:
        compose_config([*overrides, "train.seeds=4096"])
    message = str(err.value)
    assert message.startswith("train.seeds=4096 is not allowed; 4096 members would need about")
    assert f"this machine has {free_gib:.1f} GB free" in message and "\n" not in message
    return int(re.search(r"at most (\d+) fit", message).group(1))


@pytest.mark.parametrize("overrides", [[], ["data=ring8"]])
def test_too_many_seeds_for_the_free_memory_are_refused_naming_how_many_fit(monkeypatch, overrides):
    fit = _fit_limit(overrides, 3.0, monkeypatch)
    assert 100 < fit < 4096
    compose_config([*overrides, f"train.seeds={fit}"])  # as many as it says fit are accepted ...
    with pytest.raises(ConfigError, match=f"train.seeds={fit + 1} is not allowed"):
        compose_config([*overrides, f"train.seeds={fit + 1}"])  # ... and one more is not
    assert _fit_limit([*overrides, "train.eval_samples=200000"], 3.0, monkeypatch) < fit


def test_the_estimate_does_not_undercount_what_a_population_measured():
    """Peak resident memory of `python -m ganlab.train train.seeds=K` (10 iterations, chunked evaluation)
    measured on the development machine; the estimate may overcount (it refuses early) but not under."""
    measured_gib = {((), 1024): 2.38, (("data=ring8",), 512): 1.83, (("data=grid25",), 256): 1.80,
                    (("data=mixture_1d", "model=vanilla"), 256): 1.03, (("model=minibatch",), 256): 1.68,
                    (("model=minibatch", "train.batch_size=512", "train.r1_gamma=0.1"), 64): 8.57}
    for (overrides, members), gib in measured_gib.items():
        estimate = model_size.estimated_population_bytes(compose_config(list(overrides)), members) / 2**30
        assert gib <= estimate <= 2 * gib, (overrides, members, estimate)


def test_a_population_sweep_too_large_for_the_memory_is_refused_before_the_study_opens(monkeypatch, tmp_path):
    from ganlab.config import validate
    from ganlab.sweeping import population_driver
    from ganlab.sweeping.definition import load

    monkeypatch.setattr(validate, "available_memory_bytes", lambda: 2 * 2**30)
    opened = []
    monkeypatch.setattr(population_driver, "open_study", lambda *a, **k: opened.append(1))
    sweep = load("default", trials=8, storage=f"sqlite:///{tmp_path}/optuna.db")
    with pytest.raises(ConfigError, match=r"--population=4096 is not allowed; 4096 members would need"):
        population_driver.run_population_sweep(sweep, f"sqlite:///{tmp_path}/optuna.db",
                                               f"sqlite:///{tmp_path}/mlflow.db", 4096, 1)
    assert not opened and not (tmp_path / "optuna.db").exists()


def test_a_population_sweep_is_sized_by_the_largest_values_it_searches(monkeypatch, tmp_path):
    # a minibatch layer's kernels grow each member's pairwise distances: a population that fits at the
    # base's 5 kernels but not at the searched 10 is refused before the study opens
    from ganlab.config import validate
    from ganlab.sweeping import population_driver
    from ganlab.sweeping.definition import load

    path = tmp_path / "kernels.yaml"
    path.write_text(yaml.safe_dump({
        "base": ["model=minibatch"], "fixed": ["train.batch_size=1024"], "objective": "ks", "trials": 4,
        "space": {"model.kernels": {"type": "int", "low": 2, "high": 10},
                  "optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}))
    sweep = load(str(path), storage=f"sqlite:///{tmp_path}/optuna.db")
    assert population_driver.largest_members(sweep).model.kernels == 10
    at = {k: model_size.estimated_population_bytes(compose_config(["model=minibatch", "train.batch_size=1024",
                                                                   f"model.kernels={k}"]), 64) for k in (5, 10)}
    monkeypatch.setattr(validate, "available_memory_bytes", lambda: int((at[5] + at[10]) / 2 / validate.MEMORY_SHARE))
    monkeypatch.setattr(population_driver, "open_study", lambda *a, **k: pytest.fail("the study was opened"))
    with pytest.raises(ConfigError, match=r"--population=64 is not allowed; 64 members would need"):
        population_driver.run_population_sweep(sweep, f"sqlite:///{tmp_path}/optuna.db",
                                               f"sqlite:///{tmp_path}/mlflow.db", 64, 1)
