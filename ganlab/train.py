"""`python -m ganlab.train [group=option ...] [key=value ...]`: train one GAN, tracked in MLflow.

Hydra composes the run from ``conf/``; any key can be overridden. ``--cfg`` prints the composed
config without training; ``--help`` lists the config groups and their options.
"""

from __future__ import annotations

import os
import sys

from ganlab.errors import GanlabError
from ganlab.runtime import configure_runtime

USAGE = """usage: python -m ganlab.train [--cfg] [group=option ...] [key=value ...]
       python -m ganlab.train resume=<run_id> [train.iterations=N ...]

Examples:
  python -m ganlab.train                                   # ganlab's recipe for N(4, 1.25)
  python -m ganlab.train experiment=devnag_moments         # a faithful reproduction of S1
  python -m ganlab.train model=minibatch                   # recipes fit the settings to data and model
  python -m ganlab.train data=image_density data.path=my.png   # any grayscale picture as a 2D density
  python -m ganlab.train data=gaussian_1d data.mean=-2 data.std=0.3 optim.d_lr=3e-4 train.d_steps=5
  python -m ganlab.train train.seeds=8                     # seeds 0-7 trained together, one run, their median
  python -m ganlab.train resume=<run_id>                   # continue a killed run from its checkpoint
  python -m ganlab.train resume=<run_id> train.iterations=20000   # extend a finished run
  python -m ganlab.train --cfg data=ring8                  # show the composed config (recipe included)

Config groups and options:
"""


def _help() -> str:
    from ganlab.config.compose import GROUPS, group_options

    lines = [USAGE]
    for group in GROUPS:
        lines.append(f"  {group:<11} {', '.join(group_options(group))}")
    lines.append("\nAny key can be overridden (see --cfg for them all). Browse runs with `make ui`.")
    return "\n".join(lines)


def _summary(result) -> str:
    from ganlab.metrics import headline

    m = result.metrics
    seeds = sorted(key for key in m if "_seed" in key)
    over_seeds = []
    if seeds:
        name = seeds[0].split("_seed")[0]
        over_seeds = [f"  {len(seeds)} seeds: the final metrics are medians; {name} ranged "
                      f"{m[name + '_min']:.4f}-{m[name + '_max']:.4f} (per seed: seeds.json in the run)"]
    return "\n".join([
        f"ganlab: finished run {result.run_id} (experiment '{result.experiment}') "
        f"in {result.wall_s:.1f} s, {result.iterations} iterations",
        f"  final: {headline(m)}" + (f"  skewness {m['skewness']:.3f}  kurtosis {m['kurtosis']:.3f}"
                                     if "skewness" in m else ""),
        *over_seeds,
        f"  plots, samples.npy, weights: {result.artifact_uri}",
        f"  tracking store: {result.tracking_uri}   (browse with `make ui`)",
    ])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(_help())
        return 0
    show_cfg = "--cfg" in args
    overrides = [a for a in args if a != "--cfg"]
    resume_ids = [a.split("=", 1)[1] for a in overrides if a.startswith("resume=")]
    overrides = [a for a in overrides if not a.startswith("resume=")]
    tracking = None
    if not show_cfg and not resume_ids:  # MLflow's import and store open on another core, from now on
        tracking = _start_tracking()
    try:
        resume = None
        if resume_ids:
            from ganlab.training.resume import prepare_resume

            cfg, resume, skipped = prepare_resume(resume_ids[-1], overrides)
            for note in skipped:
                print(f"ganlab: skipped an unreadable checkpoint: {note}", file=sys.stderr)
        else:
            from ganlab.config.compose import compose_config
            from ganlab.config.uris import resolve_tracking_uri

            cfg = compose_config(overrides)
            if tracking is not None and not show_cfg:
                tracking.warm(resolve_tracking_uri(cfg.tracking.uri), cfg.data)
        if show_cfg:
            from ganlab.config.compose import to_yaml

            print(to_yaml(cfg), end="")
            return 0
        from ganlab.training.runner import TrainingFailed, run_training  # heavy imports after validation

        configure_runtime()

        try:
            if cfg.train.seeds > 1 and resume is None:
                from ganlab.population.population_runner import run_population

                result = run_population(cfg, tracking=tracking)
            else:
                result = run_training(cfg, resume=resume, tracking=tracking)
        except TrainingFailed as exc:
            if os.environ.get("GANLAB_DEBUG"):
                raise
            print(f"ganlab: run {exc.run_id} FAILED: {exc.reason}", file=sys.stderr)
            return 1
    except GanlabError as exc:
        print(f"ganlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganlab: interrupted; the run is marked KILLED in MLflow", file=sys.stderr)
        return 130
    finally:
        if tracking is not None:
            tracking.close()
    print(_summary(result))
    return 0


def _start_tracking():
    """The run's tracker in a child process that imports MLflow while this one composes the config
    and imports torch; None to track in this process (``GANLAB_TRACKING=inline``)."""
    if os.environ.get("GANLAB_TRACKING") == "inline":
        return None
    from ganlab.tracking_process import TrackerProcess

    return TrackerProcess()


if __name__ == "__main__":
    sys.exit(main())
