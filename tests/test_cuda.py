"""The population engine and the single run on a CUDA device: skipped where there is none (CI).

benchmarks/gpu_population.sh runs these on a GPU machine before timing anything, so a device bug
shows up as a failing test, not as a broken benchmark.
"""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ganlab.config.compose import compose_config
from ganlab.population.batched_metrics import metrics_1d_batched
from ganlab.population.cohort import Cohort
from ganlab.population.population_module import PopulationModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _configs(members, iterations=40):
    return [compose_config([f"train.iterations={iterations}", "train.batch_size=128", "train.accelerator=gpu",
                            *[f"{k}={v}" for k, v in m.items()]]) for m in members]


def _fit(cohort: Cohort, iterations: int, cuda_graphs: bool = False) -> Cohort:
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="gpu", devices=1)
    module = PopulationModule([cohort], cuda_graphs=cuda_graphs)
    trainer.fit(module, DataLoader(range(iterations), batch_size=None))
    if cuda_graphs:
        assert module.graphs.captures == 1  # captured once, after the warm-up, then replayed
    torch.cuda.synchronize()
    return cohort


def test_a_population_trains_on_the_device_with_masks_and_a_frozen_member():
    cohort = Cohort(_configs([{"train.d_steps": 1}, {"train.d_steps": 3}, {"optim.d_lr": 0, "optim.g_lr": 0}]))
    before = [p.detach().cpu().clone() for p in cohort.generator.parameters()]
    _fit(cohort, 20)
    assert cohort.device.type == "cuda"
    opt_d, _ = cohort.optimizers()
    assert opt_d.steps.tolist() == [20.0, 60.0, 20.0]
    after = [p.detach().cpu() for p in cohort.generator.parameters()]
    assert all(torch.equal(b[2], a[2]) for b, a in zip(before, after, strict=True))  # lr 0: not moved
    assert any(not torch.equal(b[0], a[0]) for b, a in zip(before, after, strict=True))
    assert cohort.collect_failures() == {}
    z = cohort.noise.sample(2000, generator=torch.Generator().manual_seed(0))
    ks = metrics_1d_batched(cohort.generate_eval(z).squeeze(-1), cohort.target)["ks"]
    assert all(math.isfinite(v) for v in ks)


def test_a_nan_member_is_found_at_collection_and_the_others_go_on():
    cohort = Cohort(_configs([{"train.seed": 0}, {"train.seed": 1}]))
    with torch.no_grad():
        next(cohort.discriminator.parameters())[1].fill_(float("nan"))
    _fit(cohort, 10)
    failures = cohort.collect_failures()
    assert list(failures) == [1] and "non-finite" in failures[1]
    assert torch.isfinite(next(cohort.generator.parameters())[0]).all()


def test_a_single_run_finishes_on_the_device(tmp_path):
    from ganlab.training.runner import run_training

    cfg = compose_config(["train.iterations=50", "train.accelerator=gpu", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    result = run_training(cfg, verbose=False)
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_a_graphed_population_trains_as_the_eager_one_does():
    # linear schedule: the rates are rewritten in place every replay; member 2 has rate 0 and a masked
    # third D step: graphs replay the masks and leave it where it was
    members = [{"train.d_steps": 1}, {"train.d_steps": 3}, {"optim.d_lr": 0, "optim.g_lr": 0}]
    extra = {"optim.schedule": "linear", "optim.final_lr_fraction": 0.1}
    graphed = Cohort(_configs([{**m, **extra} for m in members], iterations=40))
    before = graphed.generator.flat.detach().cpu().clone()
    _fit(graphed, 40, cuda_graphs=True)
    opt_d, _ = graphed.optimizers()
    assert graphed.member_iteration.tolist() == [40, 40, 40]
    assert opt_d.steps.tolist() == [40.0, 120.0, 40.0]
    lr = graphed.member_d_lr.cpu()
    torch.testing.assert_close(opt_d.lr.cpu(), lr * 0.1)  # the end of the linear schedule
    after = graphed.generator.flat.detach().cpu()
    assert torch.equal(before[2], after[2]) and not torch.equal(before[0], after[0])
    eager = _fit(Cohort(_configs([{**m, **extra} for m in members], iterations=40)), 40)
    z = graphed.noise.sample(2000, generator=torch.Generator().manual_seed(0))
    ks_graphed = metrics_1d_batched(graphed.generate_eval(z).squeeze(-1), graphed.target)["ks"]
    ks_eager = metrics_1d_batched(eager.generate_eval(z).squeeze(-1), eager.target)["ks"]
    assert all(math.isfinite(v) for v in ks_graphed)
    assert abs(ks_graphed[0] - ks_eager[0]) < 0.2 and abs(ks_graphed[1] - ks_eager[1]) < 0.2
    assert ks_graphed[2] == pytest.approx(ks_eager[2])  # lr 0: the same untrained member either way


def test_a_graphed_sgd_population_trains_and_leaves_a_rate_0_member_where_it_was():
    members = [{"optim": "sgd", "train.d_steps": 1}, {"optim": "sgd", "train.d_steps": 2, "optim.momentum": 0.9},
               {"optim": "sgd", "optim.d_lr": 0, "optim.g_lr": 0}]
    graphed = Cohort(_configs(members, iterations=40))
    before = graphed.generator.flat.detach().cpu().clone()
    _fit(graphed, 40, cuda_graphs=True)
    after = graphed.generator.flat.detach().cpu()
    assert graphed.member_iteration.tolist() == [40, 40, 40] and torch.isfinite(after).all()
    assert torch.equal(before[2], after[2]) and not torch.equal(before[0], after[0])
    assert not torch.equal(before[1], after[1])


def test_evaluation_chunks_on_a_gpu_use_a_share_of_its_free_memory():
    from ganlab.population.cohort import EVAL_CHUNK_BYTES, GPU_CHUNK_SHARE, chunk_budget

    free, _ = torch.cuda.mem_get_info()
    budget = chunk_budget(torch.device("cuda"), EVAL_CHUNK_BYTES)
    assert budget >= EVAL_CHUNK_BYTES and budget <= max(EVAL_CHUNK_BYTES, free // GPU_CHUNK_SHARE + 2**26)


def test_a_seeds_run_stopped_on_the_device_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """The checkpoint holds CPU copies of the cohort and the device's random state: a resumed run
    continues on the device where it stopped."""
    import signal

    import numpy as np

    from ganlab.population.population_runner import run_population
    from ganlab.signals import Stopped
    from ganlab.training import checkpoints
    from ganlab.training.resume import prepare_resume

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    cfg = compose_config(["train.seeds=3", "train.iterations=60", "train.eval_every=20", "train.plot_every=60",
                          "train.eval_samples=2048", "train.ckpt_every=20", "train.accelerator=gpu"])
    whole = run_population(cfg, verbose=False)
    calls = iter(range(1, 10**6))
    with monkeypatch.context() as patch, pytest.raises(Stopped) as stop:
        patch.setattr(checkpoints, "check_stop", lambda: Stopped(signal.SIGTERM) if next(calls) == 30 else None)
        run_population(cfg, verbose=False)
    again_cfg, point, _ = prepare_resume(stop.value.run_id, [])
    again = run_population(again_cfg, resume=point, verbose=False)
    keys = sorted(whole.metrics)
    np.testing.assert_allclose([again.metrics[k] for k in keys], [whole.metrics[k] for k in keys], rtol=1e-5)


def test_a_minibatch_population_trains_on_the_device_with_and_without_r1():
    """model=minibatch (each member's own T, lent as rows of the flat weights; real and fake judged as
    two batches) and a member with R1 (the layer's twice-differentiable form), evaluated on the device."""
    from ganlab.population.population_evaluation import PopulationEvaluator

    members = [{"model": "minibatch", "train.seed": 0}, {"model": "minibatch", "train.seed": 1, "train.r1_gamma": 1}]
    cohort = _fit(Cohort(_configs(members, iterations=30)), 30)
    assert cohort.device.type == "cuda"
    assert cohort.discriminator.net.minibatch.twice_differentiable
    assert cohort.collect_failures() == {}
    rows, samples = PopulationEvaluator(cohort, 1024, 0).evaluate(cohort)
    assert samples.shape == (2, 1024, 1)
    assert all(math.isfinite(row[key]) for row in rows for key in ("ks", "d_real", "d_fake"))


def test_a_2d_population_trains_and_is_measured_on_the_device():
    from ganlab.population.population_evaluation import PopulationEvaluator

    members = [{"data": "ring8", "train.seed": 0}, {"data": "ring8", "train.seed": 1, "train.d_steps": 2}]
    cohort = _fit(Cohort(_configs(members, iterations=30)), 30)
    rows, samples = PopulationEvaluator(cohort, 2000, 0).evaluate(cohort)
    assert samples.shape == (2, 2000, 2)
    assert all(math.isfinite(row["sliced_w1"]) and 0 <= row["modes"] <= 8 for row in rows)
