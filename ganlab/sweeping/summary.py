"""The sweep's MLflow parent run: created (or found again on resume) before workers start, and
filled at the end with the best trial, its config as YAML, and Optuna's standard figures."""

from __future__ import annotations

import shlex
import time
import warnings
from typing import Any

import matplotlib.pyplot as plt
import optuna
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config, to_yaml
from ganlab.config.uris import local_store_uri
from ganlab.errors import one_line
from ganlab.stored_runs import RunReadError, StoredRun
from ganlab.sweeping.definition import SweepDefinition
from ganlab.sweeping.worker_faults import finished, retried_failures
from ganlab.tracking import open_experiment

ROLE_TAG, STUDY_TAG, STORAGE_TAG = "ganlab.role", "ganlab.study", "ganlab.storage"


def open_parent_run(sweep: SweepDefinition, tracking_uri: str, storage_url: str) -> str:
    """The parent run of this study: the existing one when resuming, else a new one with the sweep's
    settings as params. Done once, in the driver, before any worker touches the store."""
    client, exp_id = open_experiment(tracking_uri, sweep.experiment_name)
    found = client.search_runs([exp_id], filter_string=(
        f"tags.`{ROLE_TAG}` = 'sweep_parent' and tags.`{STUDY_TAG}` = '{sweep.name}'"))
    for run in found:
        if run.data.tags.get(STORAGE_TAG) == storage_url:
            client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id
    run = client.create_run(exp_id, run_name=sweep.name if sweep.grid else f"sweep-{sweep.name}",
                            tags={ROLE_TAG: "sweep_parent", STUDY_TAG: sweep.name, STORAGE_TAG: storage_url})
    params = {"study_name": sweep.name, "trials": sweep.trials, "base": " ".join(sweep.base) or "(default)",
              "fixed": " ".join(sweep.fixed), "sampler": _describe(sweep.sampler), "pruner": _describe(sweep.pruner),
              "objective": " & ".join(f"{o.direction} {o.metric}" for o in sweep.objectives), "storage": storage_url}
    for p in sweep.space:
        params[f"space.{p.key}"] = (f"{p.type} {p.choices}" if p.type == "categorical"
                                    else f"{p.type} [{p.low}, {p.high}]" + (" log" if p.log else ""))
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id


def _describe(spec: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({args})"


# a trial's end in the study -> its child run's trial_state tag and status
CHILD_END = {optuna.trial.TrialState.COMPLETE: ("complete", "FINISHED"),
             optuna.trial.TrialState.PRUNED: ("pruned", "KILLED"),
             optuna.trial.TrialState.FAIL: ("failed", "KILLED")}


def close_orphaned_child_runs(study: optuna.Study, tracking_uri: str, parent_run_id: str) -> None:
    """Child runs still RUNNING in MLflow whose trials have ended in the study are closed as the study
    says they ended: a killed or crashed worker's trial was failed (and retried), a trial whose end
    could not be written to MLflow at the time (a full disk, a server down) completed or was pruned."""
    trials = {str(t.number): t for t in study.get_trials(deepcopy=False)}
    client = MlflowClient(tracking_uri)
    run = client.get_run(parent_run_id)
    for child in client.search_runs([run.info.experiment_id], filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'")):
        trial = trials.get(child.data.tags.get("trial_number", ""))
        if trial is not None and trial.state == optuna.trial.TrialState.RUNNING:
            continue
        state, status = CHILD_END.get(trial.state if trial else optuna.trial.TrialState.FAIL, ("failed", "KILLED"))
        client.set_tag(child.info.run_id, "trial_state", state)
        if state == "failed":
            reason = trial.user_attrs.get("failure_reason") if trial else None
            client.set_tag(child.info.run_id, "failure_reason", reason or "its worker stopped (killed or crashed)")
        else:
            client.set_tag(child.info.run_id, "closed_late", "its end could not be recorded when the trial ended")
        client.set_terminated(child.info.run_id, status=status)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state; a failed trial that was queued again (the sweep was stopped, its worker died)
    counts as ``retried``, not ``fail``: its copy is the trial now."""
    retried = retried_failures(study)
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = "retried" if t.number in retried else t.state.name.lower()
        out[key] = out.get(key, 0) + 1
    return out


def failure_lines(study: optuna.Study, limit: int = 5) -> list[str]:
    """'trial N: <reason>' for the failed trials that were not queued again, the last ``limit``."""
    retried = retried_failures(study)
    failed = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
              if t.number not in retried]
    return [f"  trial {t.number}: {t.user_attrs.get('failure_reason', 'no reason recorded')}" for t in failed[-limit:]]


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Single objective: completed trials, best first. Several: the Pareto front."""
    if len(study.directions) > 1:
        return list(study.best_trials)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.value, reverse=reverse)


def short_reason(reason: str, width: int = 60) -> str:
    """A failure reason for a one-line trial row: its first clause (the details, such as the losses'
    values and the hint, are in the summary and the child run), cut at ``width`` with an ellipsis."""
    head = reason
    for cut in (" (", "; "):
        if 0 < head.find(cut):
            head = head[:head.find(cut)]
    return head if len(head) <= width else head[:width - 1].rstrip() + "…"


def trial_line(study: optuna.Study, sweep: SweepDefinition, trial: optuna.trial.FrozenTrial, shown: str) -> str:
    """A finished trial's progress line, as process workers and populations print it."""
    best = best_trials(study)
    best_text = f", best {best[0].values[0]:.4g}" if best and len(study.directions) == 1 else ""
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    return (f"[sweep {sweep.name}] trial {trial.number:>3} {trial.state.name:<8} {shown}  | {params}  "
            f"({finished(study)}/{sweep.trials} done{best_text})")


def ks_noise_note(best: list[optuna.trial.FrozenTrial], sweep: SweepDefinition, top: int = 5) -> str | None:
    """A note when the best trials' KS values differ by less than KS's own sampling noise on the
    evaluation points: their order is then partly luck (docs/sweeps.md, "A noisy objective").

    For a perfect generator sqrt(n) * KS follows Kolmogorov's law (spread 0.26); for one that is off,
    KS is its error plus the empirical CDF's noise at the worst point, whose spread sqrt(F(1 - F) / n)
    reaches 0.5 / sqrt(n). Which applies is read from the best value against the perfect median. A trial
    over seeds (``train.seeds=N``) reports a median of N readings, but its seeds are evaluated on the same
    noise draws, so their readings share this noise: only more evaluation points shrink it."""
    from scipy.stats import kstwobign

    if len(sweep.objectives) != 1 or sweep.objectives[0].metric != "ks" or len(best) < 2:
        return None
    try:
        train = compose_config(best[0].user_attrs.get("overrides", [])).train
        n, seeds = int(train.eval_samples), int(train.seeds)
    except Exception:  # noqa: BLE001 -- a note, never a reason for the summary to fail
        return None
    perfect = float(kstwobign.median()) / n ** 0.5
    noise = (float(kstwobign.std()) if best[0].value <= 2 * perfect else 0.5) / n ** 0.5
    close = sum(abs(t.value - best[0].value) < 2 * noise for t in best[:top])
    if close < 2:
        return None
    if seeds > 1:  # the seeds share the evaluation's noise draws (PopulationEvaluator): more seeds keep it
        advice = f"add train.eval_samples={10 * n} to the sweep's fixed list before trusting their order"
        over = f", shared by the {seeds} seeds of a trial"
    else:
        advice = (f"re-train them over seeds (train.seeds=3) before trusting their order, or add "
                  f"train.eval_samples={10 * n} to the sweep's fixed list")
        over = ""
    return (f"note: KS on about {n:,} evaluation points (train.eval_samples) has noise of about ±{noise:.4f} "
            f"here{over} (a perfect generator reads {perfect:.4f}), and the top {close} trials are within twice "
            f"that of the best: {advice} (docs/sweeps.md)")


def rerun_command(trial: optuna.trial.FrozenTrial, tracking_uri: str | None = None) -> str:
    """The trial as one training command; a key given twice (a file's fixed value, then a command-line
    override of it) appears once, with the value that won. ``tracking_uri``: the sweep's store, named
    in the command unless it is the local default (a pasted command then records beside the sweep)."""
    last = {o.split("=", 1)[0]: o for o in trial.user_attrs.get("overrides", [])}
    overrides = [o for o in last.values() if not o.startswith(("tracking.experiment=", "tracking.register="))]
    if tracking_uri and "tracking.uri" not in last and tracking_uri != local_store_uri():
        overrides.append(f"tracking.uri={tracking_uri}")
    return "python -m ganlab.train " + " ".join(shlex.quote(o) for o in overrides)  # a shell keeps each whole


def _figures(study: optuna.Study) -> dict[str, Any]:
    """Optuna's matplotlib figures; each is skipped when the study cannot support it yet."""
    from optuna.visualization import matplotlib as ovm

    makers = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
              "parallel_coordinate": ovm.plot_parallel_coordinate, "slice": ovm.plot_slice}
    if len(study.directions) > 1:
        makers = {"pareto_front": ovm.plot_pareto_front}
    figures = {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no completed trials" is no news in a stopped study
    try:
        _draw(study, makers, figures)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return figures


def _draw(study: optuna.Study, makers: dict[str, Any], figures: dict[str, Any]) -> None:
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make(study)
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            figures[name] = first.figure
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError):
            continue


def _best_config_yaml(trial: optuna.trial.FrozenTrial, tracking_uri: str) -> str:
    """The config the best trial trained with, read back from its child run (composed again from
    its overrides when the child run cannot be read)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        try:
            with StoredRun(tracking_uri, run_id) as run:
                return to_yaml(run.config())
        except RunReadError:
            pass
    overrides = [o for o in trial.user_attrs.get("overrides", []) if not o.startswith("tracking.")]
    return to_yaml(compose_config(overrides))


def _register_best(client: MlflowClient, name: str, top: optuna.trial.FrozenTrial, parent_run_id: str) -> None:
    """The best trial's generator Model as the next version of ``name`` (once per run, however often
    the sweep is re-run), with a line saying so."""
    from ganlab.errors import GanlabError
    from ganlab.generator_model import register_generator, registered_versions

    run_id = top.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    versions = registered_versions(client, name, run_id)
    try:
        version = versions[-1] if versions else register_generator(client, run_id, name)
    except GanlabError as exc:
        print(f"ganlab sweep: the best trial's generator was not registered: {exc}", flush=True)
        return
    client.set_tag(parent_run_id, "registered", f"models:/{name}/{version}")
    print(f"ganlab sweep: the best trial ({top.number}) is registered as models:/{name}/{version}", flush=True)


def finish_parent_run(study: optuna.Study, sweep: SweepDefinition, tracking_uri: str, parent_run_id: str,
                      status: str = "FINISHED") -> None:
    """The study's summary into the parent run (counts, best trial, plots), then its final status. A
    stopped sweep's parent is closed even when its summary cannot be written (a full disk)."""
    client = MlflowClient(tracking_uri)
    status = RunStatus.to_string(RunStatus.from_string(status))
    stopped = status != "FINISHED"
    try:
        _log_summary(client, study, sweep, tracking_uri, parent_run_id, register=not stopped)
    except Exception:
        if stopped:  # its status matters more than its summary
            client.set_terminated(parent_run_id, status=status)
        raise
    client.set_terminated(parent_run_id, status=status)


def close_stopped_parent_run(study: optuna.Study, sweep: SweepDefinition, tracking_uri: str,
                             parent_run_id: str) -> str:
    """Close a stopped sweep's parent run KILLED, as far as the store allows: "" if it is closed, else
    a clause for the sweep's last line (the fault that stopped the sweep, a full disk, may refuse this too)."""
    try:
        finish_parent_run(study, sweep, tracking_uri, parent_run_id, status="KILLED")
    except Exception as error:  # noqa: BLE001 -- said in the line, not raised over the first error
        return (f"; the MLflow parent run {parent_run_id} could not be closed ({one_line(error)}) and shows "
                "RUNNING until the sweep runs again")
    return ""


def _log_summary(client: MlflowClient, study: optuna.Study, sweep: SweepDefinition, tracking_uri: str,
                 parent_run_id: str, register: bool) -> None:
    # a resumed or extended sweep logs these again: each time at a later step (the study's trial count)
    # and the time now, so MLflow's latest value is this one, and a count that fell to 0 says 0
    n = {state.name.lower(): 0 for state in optuna.trial.TrialState} | {"retried": 0} | counts(study)
    step, now = len(study.get_trials(deepcopy=False)), int(time.time() * 1000)
    metrics = [Metric(f"trials_{k}", v, now, step) for k, v in n.items()]
    best = best_trials(study)
    if best:
        top = best[0]
        for i, value in enumerate(top.values):
            metrics.append(Metric("best_value" if i == 0 else f"best_value_{i}", float(value), now, step))
        # tags, not params: params are write-once and a resumed sweep may find a better trial
        client.log_batch(parent_run_id, tags=[RunTag(f"best.{k}", str(v)) for k, v in top.params.items()]
                         + [RunTag("best.trial", str(top.number))])
        client.log_text(parent_run_id, _best_config_yaml(top, tracking_uri), "best_config.yaml")
        client.set_tag(parent_run_id, "best_rerun", rerun_command(top, tracking_uri))
        if register and sweep.register:
            _register_best(client, sweep.register, top, parent_run_id)
    client.log_batch(parent_run_id, metrics=metrics)
    for name, fig in _figures(study).items():
        client.log_figure(parent_run_id, fig, f"plots/{name}.png")
        plt.close(fig)

