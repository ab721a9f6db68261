"""The population loop: members start as their standalone runs do, train independently (masks,
failures), reproducibly, and each reaches a usable distribution."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.population import population_module
from ganlab.population.batched_metrics import metrics_1d_batched
from ganlab.population.cohort import Cohort
from ganlab.population.cohort_processes import CohortProcessError, CohortProcesses
from ganlab.population.cpu_cache import core_l2_bytes, parse_size
from ganlab.population.population_module import PopulationModule, cpu_samples_per_cohort
from ganlab.signals import Stopped, deferred_to_boundaries, stop_on_signals
from ganlab.training.runner import build_module


def _configs(members, iterations=60, extra=()):
    return [compose_config([f"train.iterations={iterations}", "train.batch_size=128", *extra,
                            *[f"{k}={v}" for k, v in m.items()]]) for m in members]


def _fit(cohort, iterations):
    """Train the cohort as the population loop does; returns the cohort."""
    torch.set_num_threads(1)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(PopulationModule([cohort]), DataLoader(range(iterations), batch_size=None))
    cohort.collect_failures()
    return cohort


def _ks(cohort):
    z = cohort.noise.sample(5000, generator=torch.Generator().manual_seed(5))
    return metrics_1d_batched(cohort.generate_eval(z).squeeze(-1), cohort.target)["ks"]


def test_each_member_starts_with_its_standalone_runs_weights():
    configs = _configs([{"train.seed": 3}, {"train.seed": 8}])
    cohort = Cohort(configs)
    for k, cfg in enumerate(configs):
        pl.seed_everything(cfg.train.seed, verbose=False)
        alone = build_module(cfg)
        for mine, theirs in zip(cohort.generator.member(k).state_dict().values(), alone.generator.state_dict().values(),
                                strict=True):
            assert torch.equal(mine, theirs)


def test_a_member_with_fewer_d_steps_sits_the_extra_steps_out():
    cohort = _fit(Cohort(_configs([{"train.d_steps": 1}, {"train.d_steps": 3}], iterations=4)), 4)
    opt_d, opt_g = cohort.optimizers()
    assert opt_d.steps.tolist() == [4.0, 12.0] and opt_g.steps.tolist() == [4.0, 4.0]


def test_a_member_whose_loss_turns_nan_is_stopped_and_the_others_go_on():
    configs = _configs([{"train.seed": 0}, {"train.seed": 1}, {"train.seed": 2}], iterations=200)
    cohort = Cohort(configs)
    with torch.no_grad():
        next(cohort.discriminator.parameters())[1].fill_(float("nan"))
    _fit(cohort, 200)
    assert list(cohort.failures) == [1] and "non-finite at iteration 1 " in cohort.failures[1]
    assert cohort.alive == [True, False, True]
    ks, clean = _ks(cohort), _ks(_fit(Cohort(configs), 200))
    assert np.isfinite(ks[[0, 2]]).all() and ks[0] < 0.5 and ks[2] < 0.5
    np.testing.assert_array_equal(ks[[0, 2]], clean[[0, 2]])  # trained exactly as without the NaN member


def test_every_member_is_fed_its_own_whole_stratified_grid():
    # S3's noise is linspace(-8, 8, batch) + jitter: one draw for all members laid out K x n gave member k
    # only the k-th part of the range
    cohort = Cohort(_configs([{"train.seed": s} for s in range(3)], extra=["experiment=aylien"]))
    fed = []
    cohort.generator.register_forward_pre_hook(lambda module, args: fed.append(args[0].detach().clone()))
    cohort.train_iteration()
    assert len(fed) == 2  # one D step, one G step
    grid = torch.linspace(-8, 8, 128).view(1, 128, 1)
    for z in fed:
        assert z.shape == (3, 128, 1)
        jitter = z - grid
        assert bool(((jitter >= 0) & (jitter <= 0.01)).all())


def test_the_same_population_twice_gives_identical_samples():
    runs = [_ks(_fit(Cohort(_configs([{"optim.d_lr": 1e-3}, {"optim.d_lr": 3e-3}])), 60)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.slow
def test_members_with_their_own_rates_each_learn_the_target():
    # the 1D recipe at 1,000 iterations (short-run boost x2): the default's median KS over seeds 100-115
    # is 0.010 (0.0042-0.015, batch 1,024; these members train on 128 at their own rates);
    # 0.15 leaves room for seeds while a member that did not train stays near 0.5-1
    members = [{"train.seed": 0, "optim.d_lr": 1e-3, "optim.g_lr": 1e-3},
               {"train.seed": 1, "optim.d_lr": 2e-3, "optim.g_lr": 1e-3, "train.d_steps": 2},
               {"train.seed": 2, "optim.d_lr": 5e-4, "optim.g_lr": 2e-3, "train.label_smoothing": 0.1}]
    ks = _ks(_fit(Cohort(_configs(members, iterations=1000)), 1000))
    assert np.all(ks < 0.15), ks


@pytest.mark.slow
def test_minibatch_members_each_learn_the_target_with_and_without_r1():
    # model=minibatch (batch 128, its recipe's): each member's minibatch layer has its own T, and a member
    # with R1 makes the cohort take the layer's twice-differentiable form (cdist has no second derivative).
    # At 500 iterations these members measured KS 0.022, 0.021, 0.018 (2026-12-07); untrained, 0.5-1
    members = [{"train.seed": 0}, {"train.seed": 1, "train.r1_gamma": 0.1},
               {"train.seed": 2, "optim.d_lr": 5e-4, "train.d_steps": 2}]
    cohort = _fit(Cohort(_configs(members, iterations=500, extra=["model=minibatch"])), 500)
    assert cohort.discriminator.net.minibatch.twice_differentiable
    ks = _ks(cohort)
    assert np.all(ks < 0.06), ks


@pytest.mark.slow
def test_conditional_members_each_put_every_class_on_its_own_picture():
    # S4's conditional GAN (two blobs, one per class): G and D see the class one-hot. Measured at 300
    # iterations (2026-12-07): every member's class-k samples 0 % off class k's picture; a G that
    # ignored its class (or was shown other classes than D) would put about half of them on the other blob
    from ganlab.population.population_evaluation import PopulationEvaluator

    members = [{"train.seed": 0}, {"train.seed": 1, "train.d_steps": 2}]
    configs = [compose_config(["experiment=cgan_two_blobs", "train.iterations=300",
                               *[f"{k}={v}" for k, v in m.items()]]) for m in members]
    cohort = _fit(Cohort(configs), 300)
    rows, samples = PopulationEvaluator(cohort, 4000, 0).evaluate(cohort)
    assert samples.shape == (2, 4000, 2)
    for row in rows:
        assert row["off_density_class0"] < 0.1 and row["off_density_class1"] < 0.1, row
        assert row["sliced_w1"] < 0.2, row


@pytest.mark.parametrize(("members", "named"), [([{"train.batch_size": 64}, {}], "train.batch_size"),
                                                ([{"model.g.hidden": "[32,32]"}, {}], "model"),
                                                ([{"model.d.dropout": 0.2}], "dropout")])
def test_members_that_cannot_share_a_population_are_one_clear_line(members, named):
    with pytest.raises(ConfigError) as err:
        Cohort(_configs(members))
    assert named in str(err.value) and "\n" not in str(err.value)


def test_losses_are_finite_numbers_after_training():
    cohort = _fit(Cohort(_configs([{}, {"train.seed": 1}], iterations=20)), 20)
    assert all(math.isfinite(v) for v in cohort.member_last_losses.flatten().tolist())


def test_a_member_with_learning_rate_0_does_not_move_while_its_neighbour_does():
    cohort = Cohort(_configs([{}, {"train.seed": 1}], iterations=10))
    cohort.member_d_lr[0] = 0.0
    cohort.member_g_lr[0] = 0.0
    before = [{k: v.clone() for k, v in net.member(m).state_dict().items()}
              for net in (cohort.generator, cohort.discriminator) for m in (0, 1)]
    _fit(cohort, 10)
    after = [net.member(m).state_dict() for net in (cohort.generator, cohort.discriminator) for m in (0, 1)]
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        moved = any(not torch.equal(old[k], new[k]) for k in old)
        assert moved == (i % 2 == 1), f"{'G' if i < 2 else 'D'} of member {i % 2}"


@pytest.mark.slow
def test_a_population_of_one_reaches_the_standalone_loops_quality():
    from helpers import train_untracked
    from scipy.stats import mannwhitneyu

    from ganlab.population.population_evaluation import PopulationEvaluator

    # The 1D recipe at 1,000 iterations, batch 128, seeds 0-4. The loops draw different random batches
    # and GAN training is chaotic (their weights differ by 1e-8 after 2 iterations, by 0.1 after 100),
    # so quality is compared over seeds: measured, each loop's median KS is 0.03-0.06 over 8 seeds, the
    # untrained generator's ~0.9. A population that learned worse would put its seeds above the
    # standalone ones (5 of 5: p = 0.008).
    alone, together = [], []
    for seed in range(5):
        (cfg,) = _configs([{"train.seed": seed}], iterations=1000)
        alone.append(train_untracked(cfg)["ks"])  # the single-run loop, without recording a run
        cohort = _fit(Cohort([cfg]), 1000)
        rows, _ = PopulationEvaluator(cohort, cfg.train.eval_samples, seed).evaluate(cohort)
        together.append(rows[0]["ks"])
    assert np.median(alone) < 0.1 and np.median(together) < 0.1, (alone, together)
    assert mannwhitneyu(alone, together).pvalue > 0.05, (alone, together)


def test_cohorts_are_split_to_fit_the_cache_and_share_the_workers_and_train_in_two_processes(monkeypatch):
    monkeypatch.setattr(population_module, "core_l2_bytes", lambda: 512 * 1024)  # 4,096 samples a piece
    configs = _configs([{"train.seed": s} for s in range(6)], iterations=10)
    small = Cohort(_configs([{"train.seed": 9}], iterations=10), keys=[9])
    module = PopulationModule([], threads=2, cpu_pieces=True)
    module.set_cohorts([Cohort(configs), small])
    assert sorted(c.keys for c in module.cohorts) == [[0, 1, 2], [3, 4, 5], [9]]  # 6 members vs 1: halved once
    first, second = (c for c in module.cohorts if c.members == 3)
    assert not torch.equal(first.rng.get_state(), second.rng.get_state())  # their own draws, not copies
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(range(10), batch_size=None))
    assert all(c.iterations_done() == [10] * c.members for c in module.cohorts)
    one_thread = PopulationModule([], threads=1, cpu_pieces=True)
    one_thread.set_cohorts([Cohort(configs)])
    assert len(one_thread.cohorts) == 1  # one thread, 6 x 128 samples: nothing to share, fits the cache
    one_thread.set_cohorts([Cohort(_configs([{"train.seed": s} for s in range(40)], iterations=10))])
    assert sorted(c.members for c in one_thread.cohorts) == [20, 20]  # 40 x 128 = 5,120 > 4,096 samples: halved
    on_gpu = PopulationModule([], threads=2)  # cpu_pieces off: cohorts as given
    on_gpu.set_cohorts([Cohort(configs), small])
    assert len(on_gpu.cohorts) == 2


def test_cpu_pieces_grow_with_the_cores_l2_cache(monkeypatch):
    sizes = {}
    for l2 in (512 * 1024, 2 * 1024**2):
        monkeypatch.setattr(population_module, "core_l2_bytes", lambda size=l2: size)
        sizes[l2] = cpu_samples_per_cohort()
    assert sizes == {512 * 1024: 4096, 2 * 1024**2: 16384}


def _three_cohorts(iterations=400):
    return [Cohort(_configs([{"train.seed": s}], iterations=iterations), keys=[s]) for s in range(3)]


def test_cohorts_trained_in_worker_processes_match_the_main_process_bit_for_bit():
    # the workers train shared-memory tensors in place and send back their random streams: the main
    # process's cohorts end exactly as if it had trained them itself, a member stopped midway included
    def train(parallel):
        module = PopulationModule([], threads=2, cpu_pieces=True)
        module.set_cohorts([Cohort(_configs([{"train.seed": s, "train.d_steps": 1 + s % 2} for s in range(4)],
                                            iterations=40), keys=list(range(4))),
                            Cohort(_configs([{"train.seed": 7}], iterations=40, extra=["train.batch_size=256"]),
                                   keys=[7])])
        if not parallel:
            module.close()
            module._parallel = lambda: False
            module.threads = 1
        for step in range(4):
            module.steps_per_call = 5
            module.training_step(None, step)
            if step == 1:
                holder = next(c for c in module.cohorts if 1 in c.keys)
                holder.stop(holder.keys.index(1))
        module.close()
        return module

    apart, together = train(parallel=True), train(parallel=False)
    assert [c.keys for c in apart.cohorts] == [c.keys for c in together.cohorts]
    for a, b in zip(apart.cohorts, together.cohorts, strict=True):
        assert a.iterations_done() == b.iterations_done()
        assert torch.equal(a.ema.flat, b.ema.flat) and torch.equal(a.discriminator.flat, b.discriminator.flat)
        assert torch.equal(a.rng.get_state(), b.rng.get_state())
    holder = next(c for c in apart.cohorts if 1 in c.keys)
    assert holder.iterations_done()[holder.keys.index(1)] == 10  # stopped after two steps of 5
    assert len(apart.cohorts) > 1  # there was something to share between the workers
    assert 0.0 < apart.workers_busy <= 1.0 and together.workers_busy is None  # what the sweep reports


def test_a_cohort_that_moves_to_the_other_worker_between_steps_trains_on_where_it_left_off():
    # cohorts are handed to whichever worker is free, so a cohort trained by one worker in one step can be
    # trained by the other in the next (equal costs: the first cohort given goes to worker 0); the rates of
    # a decaying schedule follow the cohort, not the worker's last view of it
    def cohorts():
        return [Cohort(_configs([{"train.seed": s}], iterations=40, extra=["optim.schedule=linear"]), keys=[s])
                for s in range(2)]

    processes = CohortProcesses(2)
    try:
        moved = cohorts()
        for order in (moved, moved[::-1], moved):
            processes.train(order, 5)
        assert all(set(held) == {id(c) for c in moved} for held in processes._held)  # each worker had both
    finally:
        processes.close()
    kept = cohorts()
    for _ in range(3):
        for cohort in kept:
            for _ in range(5):
                cohort.train_iteration()
    for a, b in zip(moved, kept, strict=True):
        assert a.iterations_done() == b.iterations_done() == [15]
        assert torch.equal(a.generator.flat, b.generator.flat) and torch.equal(a.rng.get_state(), b.rng.get_state())


@pytest.mark.slow
def test_cohort_workers_outlive_a_groups_stop_signal():
    """SIGTERM or Ctrl-C to the whole process group reaches the cohort workers too; the main process
    stops them in order (they are started by ``call_ignoring_stop_signals``, before torch is imported:
    spawned with their loop itself, a signal while they imported ended them, and a population sweep
    stopped that way failed, "cohort worker process died (exit code -15)", instead of checkpointing)."""
    processes = CohortProcesses(2)
    try:
        processes.train(_three_cohorts(iterations=4), 2)  # started and serving
        for process in processes._processes:
            os.kill(process.pid, signal.SIGTERM)
            os.kill(process.pid, signal.SIGINT)
        processes.train(_three_cohorts(iterations=4), 2)
        assert [p.exitcode for p in processes._processes] == [None, None]
    finally:
        processes.close()


@pytest.mark.slow
def test_a_process_that_exits_without_closing_its_cohort_workers_still_exits():
    """The workers ignore SIGTERM, which is how multiprocessing ends daemon children at exit, and they wait
    on their pipes: a population sweep stopped while it was set up printed its last line, then waited
    for them forever."""
    script = textwrap.dedent("""
        from ganlab.population.cohort_processes import CohortProcesses
        if __name__ == "__main__":
            processes = CohortProcesses(2)
            print(processes.count)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "2", out.stderr[-2000:]


GLIBC_AS_DEFAULT = sys.platform.startswith("linux") and not any(
    k == "LD_PRELOAD" or k.startswith("MALLOC_") for k in os.environ)


@pytest.mark.skipif(not GLIBC_AS_DEFAULT, reason="glibc's allocator, as configured by default")
def test_processes_that_train_cohorts_keep_freed_memory_for_the_next_iteration(monkeypatch):
    # glibc hands large freed blocks back to the system, so each iteration's tensors would be fresh pages
    # again; after keep_freed_memory() the process keeps them (its resident size stays at the peak)
    script = textwrap.dedent("""
        import gc, os, sys, torch
        from ganlab.population.heap_reuse import keep_freed_memory

        def resident_mb():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        kept = keep_freed_memory() if sys.argv[1] == "keep" else False
        before = resident_mb()
        blocks = [torch.ones(256 * 1024) for _ in range(200)]  # 200 blocks of 1 MB
        del blocks
        gc.collect()
        print(kept, resident_mb() - before)
    """)

    def run(mode):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        kept, grown = out.stdout.split()
        return kept == "True", float(grown)

    (_, plain), (kept, held) = run("plain"), run("keep")
    assert kept
    assert plain < 50 and held > 150, (plain, held)
    # ... and it is set where cohorts train: in each cohort worker, and in a population fit's process
    processes = CohortProcesses(2)
    try:
        processes.train(_three_cohorts(iterations=4), 2)
        assert processes.heap_kept == [True, True]
    finally:
        processes.close()
    calls = []
    monkeypatch.setattr(population_module, "keep_freed_memory", lambda: calls.append(1) or True)
    _fit(Cohort(_configs([{}], iterations=2)), 2)
    assert calls == [1]


def test_the_l2_cache_is_read_from_sysfs_whatever_its_index(tmp_path):
    for index, (level, kind, size) in enumerate([("1", "Data", "48K"), ("1", "Instruction", "32K"),
                                                 ("2", "Unified", "2048K"), ("3", "Unified", "105M")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, text in (("level", level), ("type", kind), ("size", size + "\n")):
            (folder / name).write_text(text)
    assert core_l2_bytes(tmp_path) == 2 * 1024**2
    assert [parse_size(t) for t in ("1M", "512K", "524288")] == [1024**2, 512 * 1024, 524288]
    assert core_l2_bytes(tmp_path / "missing") == 512 * 1024  # where Linux does not say


def test_a_step_in_worker_processes_ends_whole_when_stop_signals_come(monkeypatch):
    # SIGTERM reaches the main process mid-step, and the workers too (as Ctrl-C reaches a terminal's whole
    # process group): the workers ignore it, the step ends with every cohort at the same whole iteration,
    # then the stop is raised
    module = PopulationModule([], threads=2, cpu_pieces=True)
    module.set_cohorts(_three_cohorts())
    module.steps_per_call = 2
    module.training_step(None, 0)  # the workers are up and hold the cohorts
    pids = [p.pid for p in module._processes._processes]
    module.steps_per_call = 300

    def signals():
        time.sleep(0.3)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # handled by the main thread, blocked on the workers' replies

    threading.Thread(target=signals).start()
    with stop_on_signals(), deferred_to_boundaries(), pytest.raises(Stopped):
        module.training_step(None, 1)
    assert not module.mid_step and module.iteration == 302
    assert [c.iterations_done() for c in module.cohorts] == [[302], [302], [302]]
    module.steps_per_call = 2
    with stop_on_signals(), deferred_to_boundaries():  # no signal: the step runs on, in the same workers
        module.training_step(None, 2)
    assert [c.iterations_done() for c in module.cohorts] == [[304], [304], [304]]
    module.close()


def test_a_worker_process_that_dies_mid_step_is_one_clear_error_and_the_step_is_marked_torn():
    module = PopulationModule([], threads=2, cpu_pieces=True)
    module.set_cohorts(_three_cohorts(iterations=5000))
    module.steps_per_call = 1
    module.training_step(None, 0)
    victim = module._processes._processes[0]
    threading.Timer(0.3, os.kill, (victim.pid, signal.SIGKILL)).start()
    module.steps_per_call = 3000
    with pytest.raises(CohortProcessError, match=f"cohort worker process {victim.pid} died \\(exit code -9\\)"):
        module.training_step(None, 1)
    assert module.mid_step  # the sweep does not checkpoint a step that did not end whole
    with pytest.raises(CohortProcessError, match="failed in an earlier step"):  # its replies are unread
        module._processes.train(list(module.cohorts), 1)
    module.close()


def test_worker_processes_exit_when_the_main_process_is_killed(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent("""
        import time
        from ganlab.config.compose import compose_config
        from ganlab.population.cohort import Cohort
        from ganlab.population.population_module import PopulationModule

        if __name__ == "__main__":
            module = PopulationModule([], threads=2, cpu_pieces=True)
            module.set_cohorts([Cohort([compose_config([f"train.seed={s}"])], keys=[s]) for s in range(3)])
            module.training_step(None, 0)
            print(*[p.pid for p in module._processes._processes], flush=True)
            time.sleep(600)
    """))
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    pids = [int(p) for p in main.stdout.readline().split()]
    assert len(pids) == 2
    main.kill()
    main.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), "a worker outlived its killed main process"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (reaped by init later)


@pytest.mark.parametrize(("optim", "state"), [("adam", ("steps", "exp_avg")), ("sgd", ("buffer",))])
def test_an_iteration_writes_every_tensor_that_outlives_it_in_place(optim, state):
    # what lets a CUDA graph replay an iteration: it recorded these tensors' memory
    cohort = Cohort(_configs([{"train.d_steps": 1}, {"train.d_steps": 2}], iterations=10,
                             extra=[f"optim={optim}", "optim.schedule=linear"]))
    opt_d, opt_g = cohort.optimizers()

    def lasting():
        return {**dict(cohort.named_parameters()), **dict(cohort.named_buffers()), "opt_d.lr": opt_d.lr,
                "opt_g.lr": opt_g.lr, **{f"opt_d.{name}": getattr(opt_d, name) for name in state}}

    before = {name: (t, t.data_ptr(), t.clone()) for name, t in lasting().items()}
    for _ in range(2):
        cohort.train_iteration()
    now = lasting()
    for name, (tensor, pointer, _) in before.items():
        assert now[name] is tensor and now[name].data_ptr() == pointer, name
    changed = {name for name, (t, _, old) in before.items() if not torch.equal(t, old)}
    assert {"generator.flat", "ema.flat", "member_iteration", "member_last_losses", "opt_d.lr",
            *(f"opt_d.{name}" for name in state)} <= changed


def test_cpu_pieces_never_part_the_members_that_share_a_key():
    """A sweep trial over seeds is several members under one key, evaluated together: the cache- and
    worker-sized pieces cut only between keys (distinct keys still halve as before), and a cohort of one
    key stays whole."""
    from ganlab.population.member_settings import member_configs
    from ganlab.population.population_module import balance

    seeds = member_configs(compose_config(["train.seeds=2", "train.batch_size=256", "train.iterations=10"]))
    cohort = Cohort(seeds * 3, keys=[0, 0, 1, 1, 2, 2])
    for threads, samples in ((1, 256), (2, 10**6), (2, 600)):
        pieces = balance([cohort], threads, samples=samples)
        assert len(pieces) > 1  # split, ...
        for piece in pieces:  # ... each piece holding whole trials, their seeds in order
            assert piece.keys == sorted(piece.keys) and all(piece.keys.count(key) == 2 for key in piece.keys)
            assert [int(c.train.seed) for c in piece.configs] == [0, 1] * (piece.members // 2)
        assert sorted(key for piece in pieces for key in piece.keys) == [0, 0, 1, 1, 2, 2]
    one_trial = Cohort(seeds, keys=[7, 7])
    assert one_trial.split_point() is None and balance([one_trial], 2, samples=1) == [one_trial]
    distinct = Cohort(seeds * 2, keys=[0, 1, 2, 3])
    assert distinct.split_point() == 2 and [p.keys for p in distinct.split()] == [[0, 1], [2, 3]]
