"""`python -m ganlab.sample run_id=<id> n=50000 out=samples.csv [label=k] [plot=true] [seed=0]`.

Writes samples from a logged generator (its EMA copy when the run had one) to CSV or NPY, and with
``plot=true`` a figure beside them. ``experiment=<name>`` picks that experiment's latest finished
run instead of a run id. Weights are read with ``torch.load(weights_only=True)``: a file carrying
pickled objects is refused, never unpickled. A run that was killed before its end is sampled from
its newest checkpoint.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

USAGE = """usage: python -m ganlab.sample (run_id=<id> | experiment=<name>) [n=10000] [out=samples.npy]
                             [label=<class>] [plot=false] [seed=0] [tracking.uri=<uri>]

  out   a .csv (header x / x,y / p0..p<dim-1> for image pixels in [-1, 1], plus label for
        conditional models) or .npy file
  plot  true: also a figure (samples over the target, or an image grid), saved as <out>.png
  label for a conditional model, the class to sample (default: classes drawn as in training)
"""
KEYS = ("run_id", "experiment", "n", "out", "label", "plot", "seed", "tracking.uri")
CHUNK = 65_536


class SampleError(ValueError):
    """Bad arguments or a run that cannot be sampled: reported as one line."""


@dataclass
class SampleArgs:
    run_id: str | None = None
    experiment: str | None = None
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
        if key in ("run_id", "experiment"):
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
            args.tracking_uri = value
    if (args.run_id is None) == (args.experiment is None):
        raise SampleError("give exactly one of run_id=<id> or experiment=<name>")
    return args


def find_run(client, args: SampleArgs):
    from mlflow.exceptions import MlflowException

    if args.run_id is not None:
        try:
            return client.get_run(args.run_id)
        except MlflowException:
            raise SampleError(f"run_id={args.run_id!r}: no such run in the tracking store") from None
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SampleError(f"experiment={args.experiment!r}: no such MLflow experiment")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SampleError(f"experiment={args.experiment!r} has no finished run")
    return runs[0]


def _generator_weights(client, run, tmp: str) -> dict:
    """The EMA generator if logged, else the generator; for a run without final weights, its newest
    checkpoint. Read weights-only."""
    import mlflow
    import torch

    from ganlab.tracking import list_checkpoints
    from ganlab.training.checkpoints import CheckpointError, load_checkpoint

    logged = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    for name in ("model/generator_ema.pt", "model/generator.pt"):
        if name in logged:
            path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name, dst_path=tmp,
                                                       tracking_uri=client.tracking_uri)
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise SampleError(f"{name} of run {run.info.run_id} cannot be read safely "
                                  f"({type(exc).__name__}); it may carry pickled objects") from None
    for name in list_checkpoints(client, run.info.run_id):
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name, dst_path=tmp,
                                                   tracking_uri=client.tracking_uri)
        try:
            state = load_checkpoint(Path(path))
        except CheckpointError:
            continue
        if state["ema"] is not None:
            return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        return state["generator"]
    raise SampleError(f"run {run.info.run_id} has no generator weights (model/*.pt) and no readable checkpoint")


def sample_run(args: SampleArgs) -> tuple[Path, Path | None, str]:
    """Write the samples (and figure); return their paths and the run id."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from ganlab.tracking import resolve_tracking_uri
    from ganlab.training.evaluation import Evaluator
    from ganlab.training.runner import build_module

    uri = resolve_tracking_uri(args.tracking_uri)
    client = MlflowClient(uri)
    run = find_run(client, args)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg = OmegaConf.load(mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="config.yaml", dst_path=tmp, tracking_uri=uri))
        except Exception:
            raise SampleError(f"run {run.info.run_id} has no readable config.yaml: not a ganlab run?") from None
        weights = _generator_weights(client, run, tmp)
    module = build_module(cfg)
    try:
        module.generator.load_state_dict(weights)
    except RuntimeError as exc:
        raise SampleError(f"the generator weights of run {run.info.run_id} do not fit its config: "
                          f"{str(exc).splitlines()[0]}") from None
    classes = module.conditioning.classes
    if args.label is not None and not classes:
        raise SampleError(f"label={args.label} is not allowed; run {run.info.run_id} is not a conditional model")
    if args.label is not None and args.label >= classes:
        raise SampleError(f"label={args.label} is not allowed; the model has classes 0..{classes - 1}")

    gen = torch.Generator().manual_seed(args.seed)
    z = module.noise.sample(args.n, generator=gen)
    labels = None
    if classes:
        labels = (torch.full((args.n,), args.label, dtype=torch.long) if args.label is not None
                  else module.fake_labels(args.n, gen))
    module.ema = None  # the weights loaded into G are already the ones to sample from
    chunks = [Evaluator.generate(module, z[i:i + CHUNK], None if labels is None else labels[i:i + CHUNK])
              for i in range(0, args.n, CHUNK)]
    samples = torch.cat(chunks).float().numpy()
    label_array = None if labels is None else labels.numpy()
    _write(args.out, samples, label_array)
    figure = _plot(module, samples, label_array, args.out) if args.plot else None
    return args.out, figure, run.info.run_id


def _write(out: Path, samples, labels) -> None:
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples if labels is None else np.column_stack([samples, labels]))
        return
    dim = samples.shape[1]
    columns = ["x"] if dim == 1 else ["x", "y"] if dim == 2 else [f"p{i}" for i in range(dim)]  # images: pixels
    table = samples if labels is None else np.column_stack([samples, labels])
    header = ",".join(columns + ([] if labels is None else ["label"]))
    fmt = ["%.7g"] * samples.shape[1] + ([] if labels is None else ["%d"])
    np.savetxt(out, table, delimiter=",", header=header, comments="", fmt=fmt)


def _plot(module, samples, labels, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ganlab.plots.plotter import build_plotter

    plotter = build_plotter(module.target)
    frame = plotter.frame(samples, labels, 0, lambda points, label: None)
    fig = plotter.figure(frame, {})
    fig.suptitle(f"{len(samples):,} samples from the generator")
    path = out.with_suffix(".png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0 if argv else 2
    from ganlab.config.compose import ConfigError

    try:
        out, figure, run_id = sample_run(parse_args(argv))
    except (SampleError, ConfigError) as exc:
        print(f"ganlab.sample: error: {exc}", file=sys.stderr)
        return 2
    print(f"ganlab.sample: wrote {out}" + (f" and {figure}" if figure else "") + f" from run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
