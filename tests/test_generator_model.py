"""The generator as an MLflow Model: logged by every run, loaded through pyfunc in a plain Python
process (nothing of ganlab imported), registered as versions 1 then 2, sampled by model_uri."""

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.sample import main as sample_main
from ganlab.training.runner import run_training

TINY = ["train.iterations=200", "train.eval_every=100", "train.plot_every=200", "train.eval_samples=2000"]

# a user's session: only mlflow and numpy; the noise is drawn as the model's metadata describes it
PLAIN_SESSION = """
import json, sys
import mlflow, numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
meta = model.metadata.metadata
noise = meta["noise"]
assert noise["name"] == "uniform", noise
z = np.random.default_rng(1).uniform(noise["low"], noise["high"], (20000, noise["dim"])).astype("float32")
x = model.predict(z)
probe = np.asarray(json.loads(sys.argv[2]), dtype="float32")
print(json.dumps({"shape": list(x.shape), "samples": x[:, 0].tolist(), "probe": model.predict(probe).tolist(),
                  "ganlab_imported": any(m == "ganlab" or m.startswith("ganlab.") for m in sys.modules),
                  "input": meta["input"]}))
"""


@pytest.mark.slow
def test_every_run_logs_a_generator_model_that_plain_pyfunc_loads(tracking_uri, tmp_path):
    result = run_training(compose_config(TINY), verbose=False)
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["generator_model"].startswith("models:/m-")
    assert [o.model_id for o in run.outputs.model_outputs] == [run.data.tags["generator_model"].split("/")[-1]]
    samples = np.load(client.download_artifacts(result.run_id, "samples.npy", str(tmp_path)))[:, 0]

    from ganlab.stored_runs import StoredRun
    from ganlab.training.runner import build_module

    with StoredRun(tracking_uri, result.run_id) as stored:  # the same weights, through ganlab
        module = build_module(stored.config())
        module.eval_generator.load_state_dict(stored.generator_state())
    probe = module.generator_input_example(5)
    expected = module.generate_eval(probe).numpy()

    proc = subprocess.run([sys.executable, "-c", PLAIN_SESSION, f"runs:/{result.run_id}/generator",
                           json.dumps(probe.tolist())], capture_output=True, text=True, timeout=300,
                          env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [20000, 1] and not out["ganlab_imported"]
    assert "float32 [n, 8]" in out["input"]
    np.testing.assert_allclose(np.array(out["probe"]), expected, rtol=1e-5, atol=1e-5)
    # numpy's noise as the metadata says, through the Model: the law of the run's own samples.npy
    assert stats.ks_2samp(out["samples"], samples).pvalue > 1e-3


@pytest.mark.slow
def test_register_makes_versions_1_then_2_and_sample_reads_them(tracking_uri, tmp_path, capsys):
    first = run_training(compose_config([*TINY, "tracking.register=ganlab-demo"]), verbose=False)
    second = run_training(compose_config([*TINY, "tracking.register=ganlab-demo", "train.seed=1"]), verbose=False)
    assert (first.registered, second.registered) == ("models:/ganlab-demo/1", "models:/ganlab-demo/2")
    client = MlflowClient(tracking_uri)
    assert client.get_model_version("ganlab-demo", "2").run_id == second.run_id

    by_model, by_run = tmp_path / "m.npy", tmp_path / "r.npy"
    assert sample_main(["model_uri=models:/ganlab-demo/2", "n=3000", f"out={by_model}"]) == 0
    assert "from models:/ganlab-demo/2" in capsys.readouterr().out
    assert sample_main([f"run_id={second.run_id}", "n=3000", f"out={by_run}"]) == 0
    np.testing.assert_allclose(np.load(by_model), np.load(by_run), rtol=1e-5, atol=1e-5)  # the same noise, same G

    assert sample_main(["model_uri=models:/ganlab-demo/7", f"out={by_model}"]) == 2
    err = capsys.readouterr().err
    assert "model_uri='models:/ganlab-demo/7' cannot be loaded" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["a/b", "x:y", " ", "n" * 257])
def test_a_registry_name_mlflow_refuses_is_a_one_line_error_before_training(name):
    with pytest.raises(ConfigError, match="tracking.register") as err:
        compose_config([f"tracking.register='{name}'"])
    assert "\n" not in str(err.value)
