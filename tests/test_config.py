"""Every config option and experiment composes; experiments hold their write-up's settings; bad input
fails with one clear line that names the bad key or value."""

import pytest

from ganlab.config import ConfigError, compose_config
from ganlab.config.compose import group_options

COMPATIBLE = {  # options that need a partner in another group
    ("preprocess", "raw"): ["model=devnag"], ("preprocess", "diffs"): ["model=devnag"],
    ("preprocess", "variances"): ["model=devnag"], ("preprocess", "moments"): ["model=devnag"],
    ("preprocess", "sorted"): ["model=devnag"],
    ("model", "devnag"): ["preprocess=moments"], ("preprocess", "none"): ["model=vanilla"],
}
CASES = [(g, o) for g in ("data", "noise", "preprocess", "model", "optim", "train", "tracking")
         for o in group_options(g)]


@pytest.mark.parametrize(("group", "option"), CASES)
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}", *COMPATIBLE.get((group, option), [])])
    if group in ("data", "noise", "preprocess", "model", "optim") and option != "auto":
        assert cfg[group].name == option


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_names_its_mlflow_experiment(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.tracking.experiment == experiment


def test_all_seven_reproductions_exist():
    assert set(group_options("experiment")) >= {
        "devnag_moments", "devnag_raw", "devnag_diffs", "devnag_variances", "aylien", "aylien_minibatch",
        "ganotes_1d"}


@pytest.mark.parametrize("variant", ["moments", "raw", "diffs", "variances"])
def test_devnag_experiments_are_s1(variant):
    cfg = compose_config([f"experiment=devnag_{variant}"])
    assert (cfg.data.mean, cfg.data.std, cfg.noise.name, cfg.noise.low, cfg.noise.high) == (4.0, 1.25, "uniform", 0, 1)
    assert cfg.preprocess.name == variant and cfg.model.name == "devnag"
    assert list(cfg.model.g.hidden) == [5, 5] and list(cfg.model.g.activations) == ["tanh", "tanh"]
    assert list(cfg.model.d.hidden) == [10, 10] and list(cfg.model.d.activations) == ["sigmoid", "sigmoid"]
    assert (cfg.optim.name, cfg.optim.d_lr, cfg.optim.g_lr, cfg.optim.momentum) == ("sgd", 1e-3, 1e-3, 0.9)
    t = cfg.train
    assert (t.batch_size, t.iterations, t.d_steps, t.g_steps, t.loss) == (500, 5001, 20, 20, "bce")
    assert (t.ema_decay, t.r1_gamma, t.label_smoothing, cfg.optim.schedule) == (0.0, 0.0, 0.0, "none")


def test_aylien_is_s3():
    cfg = compose_config(["experiment=aylien"])
    assert (cfg.data.mean, cfg.data.std) == (4.0, 0.5)
    assert (cfg.noise.name, cfg.noise.low, cfg.noise.high, cfg.noise.jitter) == ("stratified", -8, 8, 0.01)
    assert list(cfg.model.g.hidden) == [4] and list(cfg.model.g.activations) == ["softplus"]
    assert list(cfg.model.d.hidden) == [8, 8, 8] and cfg.model.d.init == "normal" and cfg.model.d.init_std == 1.0
    assert (cfg.optim.name, cfg.optim.d_lr, cfg.optim.g_lr) == ("adam", 1e-3, 1e-3)
    t = cfg.train
    assert (t.batch_size, t.iterations, t.d_steps, t.g_steps, t.loss, t.seed) == (8, 5000, 1, 1, "clamped_log", 42)


def test_ganotes_1d_is_s5():
    cfg = compose_config(["experiment=ganotes_1d"])
    assert cfg.train.label_smoothing == pytest.approx(0.05) and cfg.optim.name == "adam"
    assert "elu" in cfg.model.d.activations and cfg.preprocess.name == "moments"


def test_default_is_the_s1_task_with_stabilisers():
    cfg = compose_config([])
    assert (cfg.data.name, cfg.data.mean, cfg.data.std, cfg.noise.name) == ("gaussian_1d", 4.0, 1.25, "uniform")
    assert cfg.tracking.experiment == "default"
    assert (cfg.model.name, cfg.preprocess.name, cfg.preprocess.group_size) == ("quantile", "sorted", 128)


def test_auto_preprocess_follows_the_model():
    assert compose_config(["model=minibatch"]).preprocess.name == "none"
    assert compose_config(["model=vanilla"]).preprocess.group_size == 0
    assert compose_config(["model=devnag"]).preprocess.name == "sorted"


def test_issue_example_overrides_compose():
    cfg = compose_config(["data=gaussian_1d", "data.mean=-2", "data.std=0.3", "optim.d_lr=3e-4", "train.d_steps=5"])
    assert (cfg.data.mean, cfg.data.std, cfg.optim.d_lr, cfg.train.d_steps) == (-2.0, 0.3, 3e-4, 5)


BAD = [
    (["model=transformer"], "unknown model option 'transformer'; allowed: devnag, minibatch, quantile, vanilla"),
    (["optim.d_lr=fast"], "optim.d_lr"),
    (["optim.g_lr=-1e-3"], "optim.g_lr=-0.001"),
    (["train.batch_size=0"], "train.batch_size=0"),
    (["train.d_steps=0"], "train.d_steps=0"),
    (["model=vanilla", "preprocess=moments"], "model=vanilla judges single samples"),
    (["model=devnag", "preprocess=none"], "model=devnag judges whole batches"),
    (["model=devnag", "train.batch_size=500"], "preprocess.group_size=128 is not allowed; must divide"),
    (["data.colour=1"], "data.colour"),
    (["+data.colour=1"], "data.colour=1"),
    (["data.std=0"], "data.std=0.0"),
    (["data=mixture_1d", "data.weights=[0.5,0.6]"], "sum to 1"),
    (["data=mixture_1d", "data.means=[1.0]"], "data.means"),
    (["tracking.uri=./mlruns"], "tracking.uri='./mlruns'"),
    (["tracking.uri=http://"], "needs a host"),
    (["train.iterations=1.5"], "train.iterations"),
    (["model.g.activations=[tanh]"], "one activation per hidden layer"),
    (["model.d.activations=[relu,swish]"], "'swish' is not allowed; allowed: none, relu"),
    (["train.loss=hinge"], "train.loss='hinge'"),
    (["train.accelerator=tpu"], "allowed: cpu, gpu, auto"),
    (["train.ema_decay=1.0"], "train.ema_decay=1.0"),
    (["noise.low=2", "noise.high=1"], "noise.high=1.0"),
    (["experiment=devnag_moments", "train.batch_size=1"], "at least 2 samples"),
    (["model.d.output_activation=sigmoid"], "model.d.output_activation"),
    (["trainiterations"], "overrides look like"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_is_one_clear_line(overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose_config(overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message
