"""`python -m ganlab.train [group=option ...] [key=value ...]`: train one GAN, tracked in MLflow.

Hydra composes the run from ``conf/``; any key can be overridden. ``--cfg`` prints the composed
config without training; ``--help`` lists the config groups and their options.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ganlab.config.uris import browse_hint
from ganlab.errors import ConfigError, GanlabError
from ganlab.runtime import configure_runtime
from ganlab.signals import Stopped, stop_on_signals

USAGE = """usage: python -m ganlab.train [--cfg] [group=option ...] [key=value ...]
       python -m ganlab.train -m [--workers N] [--cfg] key=a,b 'other=range(0,3)' ...   (every combination)
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
  python -m ganlab.train -m optim.d_lr=1e-4,3e-4,1e-3 'train.seed=range(0,3)'   # 9 runs, one MLflow parent run
  python -m ganlab.train -m optim.d_lr=1e-4,1e-3 train.seeds=3   # 2 runs, each judged by its median over 3 seeds

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
        f"  generator model: runs:/{result.run_id}/generator"
        + (f", registered as {result.registered}" if result.registered else ""),
        f"  tracking store: {result.tracking_uri}   {browse_hint(result.tracking_uri)}",
    ])


# Hydra's own flags, and what to use instead (ganlab composes from conf/ with Hydra's compose API)
HYDRA_FLAGS = {
    "--config-name": "pick a named config with experiment=<name> (conf/experiment/)",
    "-cn": "pick a named config with experiment=<name> (conf/experiment/)",
    "--config-path": "ganlab reads conf/ only; add a YAML under conf/<group>/ and select it",
    "-cp": "ganlab reads conf/ only; add a YAML under conf/<group>/ and select it",
    "--config-dir": "ganlab reads conf/ only; add a YAML under conf/<group>/ and select it",
    "-cd": "ganlab reads conf/ only; add a YAML under conf/<group>/ and select it",
    "--info": "--help lists the config groups and their options",
    "-i": "--help lists the config groups and their options",
    "--resolve": "--cfg prints the config already resolved",
    "--package": "--cfg prints the whole config",
    "-p": "--cfg prints the whole config",
    "--run": "leave out -m to train one run",
    "-r": "leave out -m to train one run",
    "--hydra-help": "--help",
    "--shell-completion": "--help lists the config groups and their options",
    "-sc": "--help lists the config groups and their options",
    "--experimental-rerun": "resume=<run_id> continues a run; its config.yaml is in MLflow",
    "--version": "pip show ganlab",
}


@dataclass
class CommandLine:
    overrides: list[str]
    show_cfg: bool = False
    multirun: bool = False
    workers: int | None = None


def parse_command_line(args: list[str]) -> CommandLine:
    """Split flags from overrides; a flag ganlab does not take is a one-line error saying what to use."""
    line = CommandLine([])
    rest = iter(args)
    for arg in rest:
        flag, _, inline = arg.partition("=")
        if arg in ("-m", "--multirun"):
            line.multirun = True
        elif arg == "--cfg":
            line.show_cfg = True
        elif arg in ("job", "all") and line.show_cfg and not line.overrides:
            continue  # Hydra's --cfg job|all: both are the whole config here
        elif flag == "--workers":
            value = inline or next(rest, "")
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--workers={value!r} is not allowed; must be an integer >= 1")
            line.workers = int(value)
        elif flag in HYDRA_FLAGS:
            raise ConfigError(f"Hydra's {flag} is not supported by ganlab; {HYDRA_FLAGS[flag]}")
        elif arg.startswith("-"):
            raise ConfigError(f"unknown flag {arg!r}; ganlab.train takes --cfg, -m/--multirun, --workers N, --help "
                              "and overrides like group=option or key=value")
        elif arg.split("=", 1)[0].lstrip("+~").startswith(("hydra.", "hydra/")):
            raise ConfigError(f"{arg!r}: hydra.* settings have no effect in ganlab (runs are recorded in MLflow, "
                              "not in Hydra's output folders; -m runs in --workers N processes)")
        else:
            line.overrides.append(arg)
    if line.workers is not None and not line.multirun:
        raise ConfigError("--workers applies to -m (multirun) only")
    return line


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(_help())
        return 0
    try:
        line = parse_command_line(args)
    except GanlabError as exc:
        print(f"ganlab: error: {exc}", file=sys.stderr)
        return 2
    if line.multirun:
        return _multirun(line)
    seeds_apart = None if line.show_cfg else _seeds_one_at_a_time(line.overrides)
    if seeds_apart is not None:
        return _multirun(CommandLine(seeds_apart, multirun=True, workers=line.workers))
    show_cfg, overrides = line.show_cfg, line.overrides
    resume_ids = [a.split("=", 1)[1] for a in overrides if a.startswith("resume=")]
    overrides = [a for a in overrides if not a.startswith("resume=")]
    tracking = None
    if not show_cfg and not resume_ids:  # MLflow's import and store open on another core, from now on
        tracking = _start_tracking()
    cfg = None
    try:
        resume = None
        if resume_ids:
            from ganlab.training.resume import prepare_resume

            configure_runtime()  # before the run's files are read back (MLflow's progress bars)

            cfg, resume, skipped = prepare_resume(resume_ids[-1], overrides)
            for note in skipped:
                print(f"ganlab: skipped an unreadable checkpoint: {note}", file=sys.stderr)
        else:
            from ganlab.config.compose import compose_config
            from ganlab.config.uris import resolve_tracking_uri

            cfg = compose_config(overrides)
            if tracking is not None and not show_cfg:
                from ganlab.training.accelerators import require_available

                require_available(cfg.train.accelerator)  # a missing GPU before the store is opened (or created)
                tracking.warm(resolve_tracking_uri(cfg.tracking.uri), cfg.data)
        if show_cfg:
            from ganlab.config.compose import to_yaml

            print(to_yaml(cfg), end="")
            return 0
        from ganlab.training.runner import TrainingFailed, run_training  # heavy imports after validation

        configure_runtime()

        try:
            with stop_on_signals():
                if cfg.train.seeds > 1:  # seeds trained together (a population)
                    from ganlab.population.population_runner import run_population

                    result = run_population(cfg, tracking=tracking, resume=resume)
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
    except Stopped as exc:  # the run has been marked KILLED (and checkpointed, if it has checkpoints)
        if exc.run_id is None:
            print(f"ganlab: stopped by {exc.name} before the run was created", file=sys.stderr)
        else:
            print(f"ganlab: stopped by {exc.name}; run {exc.run_id} is marked KILLED in MLflow "
                  f"({how_to_go_on(cfg, exc.run_id, exc.checkpointed)})", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before any run was created
        print("ganlab: interrupted before the run started", file=sys.stderr)
        return 130
    finally:
        if tracking is not None:
            tracking.close()
    print(_summary(result))
    return 0


def how_to_go_on(cfg, run_id: str, checkpointed: bool | None = None) -> str:
    """The stop line's advice: resume= continues a run that keeps checkpoints (every one writes one at
    the iteration a first signal stops it); one trained with train.ckpt_every=0, or stopped at once (a
    second signal) before its first checkpoint, can only start over."""
    if cfg is not None and not cfg.train.ckpt_every:
        return "it keeps no checkpoints (train.ckpt_every=0): run the command again to start over"
    if checkpointed is False:
        return "it was stopped before its first checkpoint: run the command again to start over"
    return f"python -m ganlab.train resume={run_id} continues it from its last checkpoint"


def _multirun(line: CommandLine) -> int:
    """-m: every combination of the swept values, as a sweep (worker pool, one MLflow parent run)."""
    try:
        if any(a.startswith("resume=") for a in line.overrides):
            raise ConfigError("resume= continues one run; it cannot be combined with -m")
        from ganlab.sweeping.multirun import run_multirun

        return run_multirun(line.overrides, line.workers or 2, list_only=line.show_cfg)
    except GanlabError as exc:
        print(f"ganlab: error: {exc}", file=sys.stderr)
        return 2


def _seeds_one_at_a_time(overrides: list[str]) -> list[str] | None:
    """``train.seeds=N`` on a config population training cannot train: the -m overrides that train the
    same seeds one run each (announced in one line), else None. The fallback the population sweeps have."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+")

    typed = [o for o in overrides if key(o) == "train.seeds"]
    if not typed or any(o.startswith("resume=") for o in overrides):
        return None
    try:
        seeds = int(typed[-1].split("=", 1)[1])
    except ValueError:
        return None  # composing as typed says what is wrong, in one line
    if seeds <= 1:
        return None
    from ganlab.config.compose import compose_config
    from ganlab.population.member_settings import unsupported_reason

    rest = [o for o in overrides if key(o) != "train.seeds"]
    try:
        cfg = compose_config([*rest, "train.seeds=1"])
    except GanlabError:
        return None
    reason = unsupported_reason(cfg)
    if reason is None:
        return None
    first = cfg.train.seed
    print(f"ganlab: train.seeds={seeds} cannot be trained together ({reason}); training seeds {first}-"
          f"{first + seeds - 1} one run each instead, as python -m ganlab.train -m 'train.seed=range("
          f"{first},{first + seeds})' (a multirun: the same command again continues it, it does not train "
          "new runs)", flush=True)
    rest = [o for o in rest if key(o) != "train.seed"]  # the range replaces it
    return [*rest, f"train.seed=range({first},{first + seeds})"]


def _start_tracking():
    """The run's tracker in a child process that imports MLflow while this one composes the config
    and imports torch; None to track in this process (``GANLAB_TRACKING=inline``)."""
    if os.environ.get("GANLAB_TRACKING") == "inline":
        return None
    from ganlab.tracking_process import TrackerProcess

    return TrackerProcess()


if __name__ == "__main__":
    sys.exit(main())
