"""Every config option and experiment composes; experiments hold their write-up's settings; bad input
fails with one clear line that names the bad key or value."""

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from ganlab.config.compose import CONF_DIR, ConfigFamily, compose_config, group_options
from ganlab.errors import ConfigError
from ganlab.sweeping.definition import load

COMPATIBLE = {  # options that need a partner in another group
    ("preprocess", "raw"): ["model=devnag"], ("preprocess", "diffs"): ["model=devnag"],
    ("preprocess", "variances"): ["model=devnag"], ("preprocess", "moments"): ["model=devnag"],
    ("preprocess", "sorted"): ["model=devnag"],
    ("model", "devnag"): ["preprocess=moments"], ("preprocess", "none"): ["model=vanilla"],
    ("model", "conditional"): ["data=conditional_image_density"],
}
CASES = [(g, o) for g in ("data", "noise", "preprocess", "model", "optim", "train", "tracking")
         for o in group_options(g)]


@pytest.mark.parametrize(("group", "option"), CASES)
def test_every_group_option_composes(group, option, mnist_root, cifar_root):
    roots = {"mnist": [f"data.root={mnist_root}"], "cifar10": [f"data.root={cifar_root}"]}
    extra = roots.get(option, []) if group == "data" else []
    cfg = compose_config([f"{group}={option}", *COMPATIBLE.get((group, option), []), *extra])
    if group in ("data", "noise", "preprocess", "model", "optim") and option != "auto":
        assert cfg[group].name == option


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_names_its_mlflow_experiment(experiment, mnist_root, cifar_root):
    roots = {"mnist": [f"data.root={mnist_root}"], "cifar10": [f"data.root={cifar_root}"]}
    extra = next((r for name, r in roots.items() if experiment.endswith(f"_{name}")), [])
    cfg = compose_config([f"experiment={experiment}", *extra])
    assert cfg.tracking.experiment == experiment


def test_image_experiments_hold_s2_and_s5_settings(mnist_root, cifar_root):
    s2 = compose_config(["experiment=goodfellow_digits"])
    assert (s2.noise.name, s2.noise.dim, s2.model.g.output_activation) == ("normal", 128, "tanh")
    assert list(s2.model.g.hidden) == [256, 512, 1024, 2048] and list(s2.model.d.hidden) == [1024, 512, 256]
    assert list(s2.model.g.batch_norm) == [False, True, True, True] and s2.train.d_steps == 1
    assert s2.train.label_smoothing == 0 and s2.model.g.dropout == 0
    s5 = compose_config(["experiment=ganotes_mnist", f"data.root={mnist_root}"])
    assert (s5.noise.name, s5.noise.dim, s5.noise.low, s5.noise.high) == ("uniform", 100, -1.0, 1.0)
    assert s5.model.g.dropout == s5.model.d.dropout == 0.2 and s5.train.label_smoothing == 0.05
    assert s5.data.name == "mnist" and compose_config(["experiment=ganotes_digits"]).model.d.dropout == 0.2
    cifar = compose_config(["experiment=goodfellow_cifar10", f"data.root={cifar_root}"])
    assert cifar.data.name == "cifar10" and cifar.model.g == s2.model.g
    assert compose_config(["experiment=cgan_digits"]).model.name == "conditional"


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


def test_s4_experiments():
    zig = compose_config(["experiment=gan2d_zig"])
    assert (zig.data.name, zig.data.path, list(zig.data.box)) == ("image_density", "zig", [0, 1, 0, 1])
    assert (zig.noise.name, zig.noise.dim, zig.model.name, zig.preprocess.name) == ("normal", 2, "vanilla", "none")
    plain, cgan = compose_config(["experiment=gan2d_two_blobs"]), compose_config(["experiment=cgan_two_blobs"])
    assert list(plain.data.paths) == list(cgan.data.paths) == ["blob_left", "blob_right"]
    assert (plain.model.name, cgan.model.name) == ("vanilla", "conditional")
    assert plain.train == cgan.train and plain.optim == cgan.optim  # only the conditioning differs


def test_mode_collapse_benchmark_experiments():
    gan, pac = compose_config(["experiment=ring8_gan"]), compose_config(["experiment=ring8_pacgan"])
    assert (gan.data.count, gan.data.radius, gan.data.std) == (8, 1.0, 0.01)
    assert (gan.preprocess.name, pac.preprocess.name, pac.preprocess.m) == ("none", "pack", 4)
    assert pac.train.batch_size == 4 * gan.train.batch_size and pac.model.g == gan.model.g
    grid = compose_config(["experiment=grid25_pacgan"])
    assert (grid.data.name, grid.data.side, grid.data.spacing, grid.data.std) == ("grid25", 5, 2.0, 0.05)


def test_issue_4_examples_compose():
    assert compose_config(["data=ring8", "model=minibatch"]).preprocess.name == "none"
    cfg = compose_config(["data=grid25", "preprocess=pack", "preprocess.m=4"])
    assert (cfg.preprocess.name, cfg.preprocess.m, cfg.noise.dim) == ("pack", 4, 2)


def test_auto_preprocess_follows_the_model():
    assert compose_config(["model=minibatch"]).preprocess.name == "none"
    assert compose_config(["model=vanilla"]).preprocess.group_size == 0
    assert compose_config(["model=devnag"]).preprocess.name == "sorted"
    packed = compose_config(["data=ring8"]).preprocess  # a batch D on 2D data packs samples instead of sorting
    assert (packed.name, packed.m) == ("pack", 4)


def test_issue_example_overrides_compose():
    cfg = compose_config(["data=gaussian_1d", "data.mean=-2", "data.std=0.3", "optim.d_lr=3e-4", "train.d_steps=5"])
    assert (cfg.data.mean, cfg.data.std, cfg.optim.d_lr, cfg.train.d_steps) == (-2.0, 0.3, 3e-4, 5)


BAD = [
    (["model=transformer"],
     "unknown model option 'transformer'; allowed: conditional, devnag, minibatch, quantile, vanilla"),
    (["optim.d_lr=fast"], "optim.d_lr"),
    (["optim.g_lr=-1e-3"], "optim.g_lr=-0.001"),
    (["train.batch_size=0"], "train.batch_size=0"),
    (["train.d_steps=0"], "train.d_steps=0"),
    (["model=vanilla", "preprocess=moments"], "model=vanilla judges single samples"),
    (["model=devnag", "preprocess=none"], "model=devnag judges whole batches"),
    (["model=devnag", "preprocess=sorted", "train.batch_size=500"],
     "preprocess.group_size=128 is not allowed; must divide"),
    (["data.colour=1"], "data.colour is not a key; data has: mean, name, std"),
    (["optim.lr=1e-3"], "did you mean optim.g_lr or optim.d_lr?"),  # not OmegaConf's "not in 'AdamConfig'"
    (["train.iteration=100"], "did you mean train.iterations?"),
    (["model.g.hidden=64"], "model.g.hidden=64 is not allowed; it takes a list, e.g. model.g.hidden=[64]"),
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
    (["train.accelerator=tpu"], "allowed: cpu, gpu, cuda, auto"),
    (["train.ema_decay=1.0"], "train.ema_decay=1.0"),
    (["noise.low=2", "noise.high=1"], "noise.high=1.0"),
    (["experiment=devnag_moments", "train.batch_size=1"], "at least 2 samples"),
    (["model.d.output_activation=sigmoid"], "model.d.output_activation"),
    (["trainiterations"], "overrides look like"),
    (["data=image_density", "data.path=/no/such.png"], "data.path='/no/such.png': no such file"),
    (["data=image_density", "data.box=[0,1,1,0]"], "data.box"),
    (["data=image_density", "data.jitter=2"], "data.jitter=2.0"),
    (["data=conditional_image_density", "data.paths=[zig]"], "needs >= 2 pictures"),
    (["data=conditional_image_density", "data.paths=[zig,/nope.png]"], "no such file"),
    (["data=ring8", "data.count=0"], "data.count=0"),
    (["data=grid25", "data.std=-1"], "data.std=-1.0"),
    (["model=conditional"], "a conditional model needs labelled data"),
    (["data=ring8", "preprocess=sorted"], "loses the joint law"),
    (["data=ring8", "model=minibatch", "preprocess=pack"], "cannot read packed inputs"),
    (["data=ring8", "preprocess=pack", "preprocess.m=3"], "preprocess.m=3 is not allowed; must divide"),
    # a minibatch D's d_real/d_fake were NaN: evaluation judges whole training batches
    (["model=minibatch", "train.eval_samples=100"],
     "train.eval_samples=100 is not allowed; must be >= train.batch_size=128 for a discriminator that judges"),
    (["data=ring8", "preprocess=pack", "preprocess.m=0"], "preprocess.m=0"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_is_one_clear_line(overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose_config(overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


# -- ConfigFamily: a sweep's trials composed from one Hydra composition per set of group choices -----

FAMILY_CASES = [
    ["train.iterations=4000", "optim.d_lr=0.0012", "optim.g_lr=3e-4", "train.d_steps=2", "train.batch_size=512"],
    ["data=ring8", "optim.d_lr=0.002", "train.label_smoothing=0.1", "model.g.hidden=[32,32,32]"],
    ["model=devnag", "preprocess=moments", "optim.d_lr=0.01", "noise.low=-2.0"],
    ["experiment=devnag_moments", "train.seed=7", "optim.g_lr=1e-3"],
    ["noise=normal", "noise.std=0.5", "train.ema_decay=0.99"],
    ["train.nokey=1"], ["optim.d_lr=abc"], ["model=nope"], ["+foo=1"], ["optim.d_lr=nan"],
    ["train.d_steps=0"], ["preprocess=sorted", "train.batch_size=100"], ["noise.std=2.0"],
    ["optim.d_lr=1e-3,2e-3"],
    ["train.batch_size=100"],  # preprocess=auto: groups of 100 (a divisor of the batch), for both composers
]


def _outcome(compose, overrides):
    try:
        return "ok", OmegaConf.to_container(compose(overrides))
    except ConfigError as exc:
        return "error", str(exc)


def test_config_family_composes_exactly_what_compose_config_does():
    family = ConfigFamily()
    expected = [_outcome(compose_config, overrides) for overrides in FAMILY_CASES]
    assert sum(kind == "ok" for kind, _ in expected) == 6
    for _ in range(2):  # the second pass is served from the cached compositions
        for overrides, want in zip(FAMILY_CASES, expected, strict=True):
            assert _outcome(family.compose, overrides) == want, overrides


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF_DIR.parent / "sweeps").glob("*.yaml"))])
def test_config_family_matches_for_every_sweeps_trials(name):
    sweep = load(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    family = ConfigFamily()
    for _ in range(4):
        overrides = sweep.trial_overrides(sweep.suggest(study.ask()))
        assert _outcome(family.compose, overrides) == _outcome(compose_config, overrides), overrides


@pytest.mark.parametrize(("batch", "group"), [(1024, 128), (128, 128), (64, 64), (200, 100), (7, 7)])
def test_auto_groups_follow_a_batch_smaller_than_128(batch, group):
    """train.batch_size=64 was refused ('preprocess.group_size=128 ... must divide 64') although the user
    typed nothing about groups (found probing compositions): auto groups are 128, or the largest
    divisor of the batch below it."""
    cfg = compose_config([f"train.batch_size={batch}"])
    assert (cfg.preprocess.name, cfg.preprocess.group_size) == ("sorted", group)


def test_a_typed_group_size_is_kept_and_checked():
    assert compose_config(["preprocess.group_size=32", "train.batch_size=64"]).preprocess.group_size == 32
    with pytest.raises(ConfigError, match="preprocess.group_size=128 is not allowed; must divide train.batch_size=64"):
        compose_config(["preprocess.group_size=128", "train.batch_size=64"])
    with pytest.raises(ConfigError, match="null is preprocess=auto's own"):
        compose_config(["preprocess=sorted", "preprocess.group_size=null"])


def test_the_end_of_a_run_says_how_to_browse_its_own_store(tmp_path):
    """`make ui` serves the repository's mlruns/ only: another store gets its own `mlflow ui` line."""
    from ganlab.config.uris import browse_hint

    repo_store = Path(__file__).resolve().parents[1] / "mlruns" / "mlflow.db"
    assert browse_hint(f"sqlite:///{repo_store}") == "(browse with `make ui`)"
    other = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert browse_hint(other) == f"(browse with: mlflow ui --backend-store-uri {other})"
    assert browse_hint("http://127.0.0.1:5000") == "(its web UI: open that address)"


def test_a_new_depth_alone_takes_the_layers_kind_and_a_mixed_or_typed_list_is_named():
    """`model.g.hidden=[8]` failed with "needs one activation per hidden layer": a composition a user
    types must train without further overrides. A list of one kind follows the depth; one that mixes
    kinds, or that the user typed, is still checked (the message says which lists follow)."""
    cfg = compose_config(["model.g.hidden=[8]", "model.d.hidden=[16,16,16]"])
    assert list(cfg.model.g.activations) == ["tanh"]
    assert list(cfg.model.d.activations) == ["leaky_relu"] * 3
    assert list(cfg.model.d.batch_norm) == []  # none stays none
    assert list(compose_config(["experiment=cgan_digits", "model.d.hidden=[256,128]"]).model.d.activations) == [
        "relu", "relu"]
    with pytest.raises(ConfigError, match=r"model.g.batch_norm=\[False, True, True, True\] is not allowed"):
        compose_config(["experiment=cgan_digits", "model.g.hidden=[256,512]"])  # mixed: which layers get it?
    with pytest.raises(ConfigError, match=r"model.g.activations=\['elu', 'sigmoid'\] is not allowed; needs one "
                                          r"activation per hidden layer \(1\); a list of one kind, not typed"):
        compose_config(["experiment=ganotes_1d", "model.g.hidden=[8]"])
    with pytest.raises(ConfigError, match=r"model.g.activations=\['tanh', 'tanh'\] is not allowed"):
        compose_config(["model.g.hidden=[8]", "model.g.activations=[tanh,tanh]"])
