"""`python -m ganlab.sample run_id=<id> n=50000 out=samples.csv [label=k] [plot=true] [seed=0]`.

Writes samples from a logged generator (its EMA copy when the run had one) to CSV or NPY, and with
``plot=true`` a figure beside them. ``experiment=<name>`` picks that experiment's latest finished
run instead of a run id; ``model_uri=models:/<name>/<version>`` samples a registered generator Model
(any MLflow model URI of one; see ``ganlab.generator_model``). Weights are read with
``torch.load(weights_only=True)``: a file carrying pickled objects is refused, never unpickled. A
run that was killed before its end is sampled from its newest checkpoint (a train.seeds run's: its
median seed by the last evaluation).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ganlab.errors import GanlabError, SampleError
from ganlab.sample_writer import CHUNK, SampleWriter
from ganlab.signals import Stopped, as_stop, stop_on_signals

USAGE = """usage: python -m ganlab.sample (run_id=<id> | experiment=<name> | model_uri=<uri>)
                             [n=10000] [out=samples.npy] [label=<class>] [plot=false] [seed=0] [tracking.uri=<uri>]

  out   a .csv (header x / x,y / p0..p<dim-1> for image pixels in [-1, 1], plus label for
        conditional models) or .npy file
  plot  true: also a figure (samples over the target, or an image grid), saved as <out>.png
  label for a conditional model, the class to sample (default: classes drawn as in training)
  model_uri  a generator MLflow Model: models:/<name>/<version> (registered), runs:/<run_id>/generator
"""
KEYS = ("run_id", "experiment", "model_uri", "n", "out", "label", "plot", "seed", "tracking.uri")


@dataclass
class SampleArgs:
    run_id: str | None = None
    experiment: str | None = None
    model_uri: str | None = None
    n: int = 10_000
    out: Path = Path("samples.npy")
    label: int | None = None
    plot: bool = False
    seed: int = 0
    tracking_uri: str | None = None


def _int(key: str, value: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SampleError(f"{key}={value!r} is not allowed; must be an integer >= {low}") from None
    if number < low:
        raise SampleError(f"{key}={number} is not allowed; must be an integer >= {low}")
    return number


def parse_args(argv: list[str]) -> SampleArgs:
    args = SampleArgs()
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise SampleError(f"{item!r} is not allowed; arguments are key=value with key one of {', '.join(KEYS)}")
        if key in ("run_id", "experiment", "model_uri"):
            setattr(args, key, value)
        elif key == "n":
            args.n = _int("n", value, 1)
        elif key == "seed":
            args.seed = _int("seed", value, 0)
        elif key == "label":
            args.label = _int("label", value, 0)
        elif key == "plot":
            if value.lower() not in ("true", "false"):
                raise SampleError(f"plot={value!r} is not allowed; must be true or false")
            args.plot = value.lower() == "true"
        elif key == "out":
            args.out = Path(value)
            if args.out.suffix not in (".csv", ".npy"):
                raise SampleError(f"out={value!r} is not allowed; must end in .csv or .npy")
        else:
            from ganlab.config.uris import check_tracking_uri

            try:
                check_tracking_uri(value)
            except GanlabError as exc:
                raise SampleError(str(exc)) from None
            args.tracking_uri = value
    if sum(v is not None for v in (args.run_id, args.experiment, args.model_uri)) != 1:
        raise SampleError("give exactly one of run_id=<id>, experiment=<name> or model_uri=<uri>")
    return args


def find_run_id(client, args: SampleArgs) -> str:
    """``run_id``, or the latest finished run of ``experiment``."""
    if args.run_id is not None:
        return args.run_id
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SampleError(f"experiment={args.experiment!r}: no such MLflow experiment")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SampleError(f"experiment={args.experiment!r} has no finished run")
    return runs[0].info.run_id


def sample_run(args: SampleArgs) -> tuple[Path, Path | None, str]:
    """Write the samples (and figure); return their paths and the run id (or the model URI) sampled."""
    import torch

    from ganlab.config.uris import resolve_tracking_uri
    from ganlab.stored_runs import RunReadError, require_store

    uri = resolve_tracking_uri(args.tracking_uri, for_reading=True)
    try:
        require_store(uri)
    except RunReadError as exc:
        raise SampleError(str(exc)) from None
    if args.model_uri is not None:
        module, source = _module_from_model(uri, args.model_uri)
    else:
        module, source = module_from_run(uri, args)
    classes = module.conditioning.classes
    if args.label is not None and not classes:
        what = source if args.model_uri else f"run {source}"
        raise SampleError(f"label={args.label} is not allowed; {what} is not a conditional model")
    if args.label is not None and args.label >= classes:
        raise SampleError(f"label={args.label} is not allowed; the model has classes 0..{classes - 1}")

    generator = torch.Generator().manual_seed(args.seed)
    shown: tuple | None = None  # the first chunk is what the figure shows
    with SampleWriter(args.out, args.n, module.target.dim, labelled=bool(classes)) as writer:
        for start in range(0, args.n, CHUNK):  # one chunk in memory at a time, whatever n is
            samples, labels = module.sample(min(CHUNK, args.n - start), generator, args.label)
            chunk = samples.float().numpy(), None if labels is None else labels.numpy()
            writer.write(*chunk)
            shown = shown or chunk
    figure = _plot(module, *shown, args.out) if args.plot else None
    return args.out, figure, source


def module_from_run(uri: str, args: SampleArgs):
    """The run's module with its logged generator weights (the EMA copy when it had one)."""
    from mlflow.tracking import MlflowClient

    from ganlab.generator_sampling import GeneratorSampler
    from ganlab.stored_runs import RunReadError, StoredRun

    run_id = find_run_id(MlflowClient(uri), args)
    try:
        with StoredRun(uri, run_id) as run:
            cfg = run.config()
            weights = run.generator_state(from_cohort=_median_seed_generator)
    except RunReadError as exc:
        prefix = f"run_id={run_id!r}: " if args.run_id is not None else ""
        raise SampleError(f"{prefix}{exc}") from None
    module = GeneratorSampler(cfg)
    try:
        module.eval_generator.load_state_dict(weights)
    except RuntimeError as exc:
        raise SampleError(f"the generator weights of run {run_id} do not fit its config: "
                          f"{str(exc).splitlines()[0]}") from None
    return module, run_id


def _median_seed_generator(state, cfg):
    """A train.seeds run's checkpoint holds a cohort (imported only then: it brings Lightning)."""
    from ganlab.population.seeds_checkpoints import median_seed_generator

    return median_seed_generator(state, cfg)


def _module_from_model(uri: str, model_uri: str):
    """A sampler built from the Model's own config, sampling through the Model (pyfunc)."""
    import mlflow

    from ganlab.generator_model import load_generator
    from ganlab.generator_sampling import GeneratorSampler

    mlflow.set_tracking_uri(uri)  # models:/ and runs:/ URIs resolve against this store
    loaded = load_generator(model_uri)
    module = GeneratorSampler(loaded.cfg)
    module.replace_eval_generator(loaded)
    return module, model_uri


def _plot(module, samples, labels, out: Path) -> Path:
    import matplotlib.pyplot as plt

    from ganlab.plots.plotter import build_plotter

    plotter = build_plotter(module.target)
    frame = plotter.frame(samples, labels, None, lambda points, label: None)  # no iteration: not a training frame
    fig = plotter.figure(frame, {})
    fig.suptitle(f"{len(samples):,} samples from the generator" + (" (the first of the file's)"
                                                                   if len(samples) == CHUNK else ""))
    path = out.with_suffix(".png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0 if argv else 2
    from ganlab.runtime import configure_runtime

    configure_runtime()
    try:
        args = parse_args(argv)
        with stop_on_signals():  # SIGTERM as Ctrl-C: a partial output is discarded, one line says so
            out, figure, source = sample_run(args)
    except GanlabError as exc:
        print(f"ganlab.sample: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as exc:  # a Ctrl-C printed torch's traceback
        stop = as_stop(exc)
        print(f"ganlab.sample: stopped by {stop.name} (no partial file is left: each is written whole or not at "
              "all)", file=sys.stderr)
        return stop.exit_code
    origin = source if args.model_uri else f"run {source}"
    print(f"ganlab.sample: wrote {out}" + (f" and {figure}" if figure else "") + f" from {origin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
