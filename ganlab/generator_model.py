"""The trained generator as an MLflow Model: logged with every run, registered on request, loaded back.

Why an MLflow Model and not only ``model/generator.pt``: a Model shows in the UI's "Models" tab,
can be registered and versioned, and loads in a plain Python session with
``mlflow.pyfunc.load_model(uri).predict(noise)``, with nothing of ganlab installed. It is saved in
MLflow's ``pt2`` format (``torch.export``): a traced graph that needs only torch to run and never
unpickles code.

Contract (also in the model's metadata, under ``input`` and ``output``): the input is a float32 array
``[n, noise_dim]`` of the run's noise (``metadata["noise"]``; for a conditional model, followed by the
class as ``classes`` one-hot columns); the output is ``[n, dim]`` samples in data space (for images,
pixels in [-1, 1], row-major). The full training config is ``metadata["ganlab_config"]`` (YAML), which
is how ``python -m ganlab.sample model_uri=...`` draws the right noise.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

ARTIFACT_NAME = "generator"  # runs:/<run_id>/generator
MODEL_TAG = "generator_model"  # the run's tag holding its Model's URI (models:/m-...)
REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}", "numpy"]  # given, so MLflow does not infer them


def model_metadata(cfg: DictConfig, input_dim: int, output_dim: int) -> dict:
    """What a user needs to feed the model and read its output, plus the config it was trained with."""
    classes = input_dim - int(cfg.noise.dim)
    noise = OmegaConf.to_container(cfg.noise, resolve=True)
    described = f"float32 [n, {input_dim}]: noise {noise}" + (f", then the class one-hot ({classes} columns)"
                                                             if classes else "")
    out = "pixels in [-1, 1], row-major" if output_dim > 2 else "points in data space"
    return {"input": described, "output": f"float32 [n, {output_dim}]: {out}", "noise": noise,
            "classes": classes, "data": str(cfg.data.name), "model": str(cfg.model.name),
            "ganlab_config": OmegaConf.to_yaml(cfg, resolve=True)}


def log_generator_model(client, run_id: str, generator: torch.nn.Module, example: torch.Tensor,
                        cfg: DictConfig) -> str:
    """Log ``generator`` as the run's MLflow Model ``generator``; return its ``models:/<model_id>`` URI.

    Runs where MLflow is loaded (the tracker). The run's status is left alone (no fluent run is opened).
    """
    import mlflow.pytorch
    from mlflow.models import infer_signature

    net = copy.deepcopy(generator).cpu().eval()
    x = example.detach().float().cpu()
    with torch.no_grad():
        y = net(x)
    x_np, y_np = x.numpy(), y.numpy().astype(np.float32)
    # created here, in the run's experiment: log_model alone would put it in the fluent API's current one
    model = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=ARTIFACT_NAME,
                                       source_run_id=run_id, model_type="generator")
    args = dict(name=ARTIFACT_NAME, run_id=run_id, model_id=model.model_id, signature=infer_signature(x_np, y_np),
                input_example=x_np, pip_requirements=REQUIREMENTS,
                metadata=model_metadata(cfg, x_np.shape[1], y_np.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info = mlflow.pytorch.log_model(net, serialization_format="pt2", **args)
        except Exception as exc:  # noqa: BLE001 -- a graph torch.export cannot trace: pickle it instead
            logging.getLogger("ganlab").warning("generator model: torch.export failed (%s); saved pickled", exc)
            info = mlflow.pytorch.log_model(net, serialization_format="pickle", **args)
    uri = f"models:/{info.model_id}"
    client.set_tag(run_id, MODEL_TAG, uri)
    return uri


def warm_export() -> None:
    """Trace one tiny network: the first ``torch.export`` of a process costs ~2 s of imports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.export(torch.nn.Linear(1, 1), (torch.zeros(2, 1),))


def register_generator(client, run_id: str, name: str) -> int:
    """Register run ``run_id``'s generator Model as a new version of ``name``; return the version."""
    from mlflow.exceptions import MlflowException

    from ganlab.errors import ConfigError

    source = client.get_run(run_id).data.tags.get(MODEL_TAG)
    if source is None:
        raise ConfigError(f"run {run_id} has no generator model to register (logged by ganlab >= 0.2)")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise ConfigError(f"tracking.register={name!r}: {exc.message}") from None
    version = client.create_model_version(name, source=source, run_id=run_id, model_id=source.split("/")[-1])
    return int(version.version)


def registered_versions(client, name: str, run_id: str) -> list[int]:
    """Versions of ``name`` already made from run ``run_id`` (a sweep re-run does not register twice)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted(int(v.version) for v in found)


class LoadedGenerator(torch.nn.Module):
    """An MLflow generator Model as a module G (what sampling calls), and the ganlab config it was trained with."""

    def __init__(self, cfg: DictConfig, model) -> None:
        super().__init__()
        self.cfg = cfg
        self.__dict__["model"] = model  # a PyFuncModel, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.model.predict(x.float().cpu().numpy()), dtype=np.float32))


def load_generator(model_uri: str) -> LoadedGenerator:
    """The Model at ``model_uri`` (models:/<name>/<version>, runs:/<id>/generator, models:/m-...); a
    SampleError naming the URI if it cannot be loaded or is not a ganlab generator."""
    import mlflow.pyfunc

    from ganlab.errors import SampleError

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # noqa: BLE001 -- MLflow raises several kinds; the first line says which
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SampleError(f"model_uri={model_uri!r} cannot be loaded: {message}") from None
    text = (model.metadata.metadata or {}).get("ganlab_config")
    if text is None:
        raise SampleError(f"model_uri={model_uri!r} is not a ganlab generator (its metadata has no ganlab_config)")
    return LoadedGenerator(OmegaConf.create(text), model)
