"""model.standardize: G and D work in the target's standard units, whatever the data's scale."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from ganlab.config.compose import compose_config
from ganlab.data.targets import build_target
from ganlab.errors import ConfigError
from ganlab.nets.data_units import ToDataUnits, ToStandardUnits
from ganlab.population.cohort import Cohort
from ganlab.population.stacked_nets import StackedNets
from ganlab.training.runner import build_module
from ganlab.training.stabilizers import r1_penalty


def test_the_two_maps_are_each_others_inverse_per_coordinate():
    x = torch.randn(50, 2) * torch.tensor([3.0, 0.01]) + torch.tensor([-40.0, 7.0])
    to_standard, to_data = ToStandardUnits([-40.0, 7.0], [3.0, 0.01]), ToDataUnits([-40.0, 7.0], [3.0, 0.01])
    z = to_standard(x)
    torch.testing.assert_close(to_data(z), x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=0.4, rtol=0)  # 50 draws: within ~3 se
    stacked = ToDataUnits([[0.0], [10.0]], [[1.0], [2.0]])  # two members' rows, as a population stacks them
    torch.testing.assert_close(stacked(torch.ones(2, 3, 1)), torch.tensor([[1.0] * 3, [12.0] * 3]).unsqueeze(-1))


@pytest.mark.parametrize(("data", "mean", "std"), [
    (["data=gaussian_1d", "data.mean=-30", "data.std=0.2"], [-30.0], [0.2]),
    # w = (.25, .75), means (-2, 6), stds 1: mean 4, var = 1 + .25 * 36 + .75 * 4 = 13
    (["data=mixture_1d", "data.weights=[0.25,0.75]", "data.means=[-2,6]", "data.stds=[1,1]"], [4.0], [13**0.5]),
    # a ring of 4 at radius 2 centred on 0: per axis var = (4 + 0 + 4 + 0) / 4 + 0.1^2
    (["data=ring8", "data.count=4", "data.radius=2", "data.std=0.1"], [0.0, 0.0], [(2 + 0.01) ** 0.5] * 2),
])
def test_each_target_gives_its_own_mean_and_std(data, mean, std):
    units = build_target(compose_config(data).data).standard_units()
    np.testing.assert_allclose(units[0], mean, atol=1e-9)
    np.testing.assert_allclose(units[1], std, rtol=1e-9)
    samples = build_target(compose_config(data).data).sample_with_labels(200_000)[0].numpy()
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.02 * max(std))  # the sampler agrees
    np.testing.assert_allclose(samples.std(0), std, rtol=0.02)


def test_g_and_d_map_between_units_and_only_when_asked():
    overrides = ["data.mean=100", "data.std=10"]
    pl.seed_everything(0, verbose=False)
    plain = build_module(compose_config([*overrides, "model.standardize=false"]))
    pl.seed_everything(0, verbose=False)
    scaled = build_module(compose_config([*overrides, "model.standardize=true"]))
    z, x = torch.rand(128, 8), 100 + 10 * torch.randn(128, 1)  # D judges groups of 128
    torch.testing.assert_close(scaled.generator(z), 100 + 10 * plain.generator(z))  # same weights, mapped
    torch.testing.assert_close(scaled.discriminator(x), plain.discriminator((x - 100) / 10))
    assert plain.discriminator.input_std is None


def test_a_bounded_output_you_type_turns_the_recipes_standard_units_off():
    """Found probing compositions: the recipe's units made a typed tanh output a refused config."""
    assert compose_config(["model.g.output_activation=tanh"]).model.standardize is False
    assert compose_config(["model.g.output_activation=sigmoid", "data=mixture_1d"]).model.standardize is False


def test_the_1d_recipe_standardizes_and_the_reproductions_do_not():
    assert compose_config([]).model.standardize and compose_config(["data=mixture_1d"]).model.standardize
    for name in ("devnag_moments", "aylien", "ganotes_1d", "ring8_ganlab"):
        assert not compose_config([f"experiment={name}"]).model.standardize, name
    assert not compose_config(["data=ring8"]).model.standardize  # 2D recipes were tuned in the data's units


@pytest.mark.parametrize(("overrides", "message"), [
    (["data=image_density", "model.standardize=true"],
     "model.standardize=True is not allowed; needs a target whose mean and std are known (gaussian_1d, mixture_1d, "
     "ring8, grid25); data=image_density is not one: set model.standardize=false"),
    (["model.standardize=true", "model.g.output_activation=tanh"],
     "model.g.output_activation='tanh' is not allowed; model.standardize=true scales G's output by the target's std"),
])
def test_standardize_refuses_what_it_cannot_serve(overrides, message):
    from ganlab.config.validate import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_config(overrides))
    assert str(err.value).startswith(message)


def test_r1_is_taken_in_the_standard_units_d_works_in():
    """D(x) = w . (x - m) / s: its gradient in D's units is w, in the data's w / s."""
    w, m, s = torch.tensor([0.5, -2.0]), torch.tensor([3.0, -1.0]), torch.tensor([4.0, 0.5])
    real = torch.randn(32, 2)

    def discriminate(x):
        return ((x - m) / s) @ w.unsqueeze(1)

    torch.testing.assert_close(r1_penalty(discriminate, real, 2.0, input_std=s), (w**2).sum())
    torch.testing.assert_close(r1_penalty(discriminate, real, 2.0), (w**2 / s**2).sum())


def test_a_populations_r1_equals_each_members_own():
    overrides = ["data.mean=50", "data.std=5", "train.batch_size=128", "train.r1_gamma=3"]
    configs = [compose_config([*overrides, f"train.seed={seed}"]) for seed in (0, 1)]
    cohort = Cohort(configs)
    real = 50 + 5 * torch.randn(2, 128, 1)
    penalties = cohort._r1(real, None, torch.tensor([3.0, 3.0]))  # unconditional: no classes
    for k in range(2):
        d = cohort.discriminator.member(k)
        torch.testing.assert_close(penalties[k], r1_penalty(d, real[k], 3.0, d.input_std), rtol=1e-5, atol=1e-7)


def test_stacked_members_keep_their_own_units():
    """Buffers stack per member, so members of different targets would each keep theirs."""
    members = []
    for mean in (-10.0, 10.0):
        pl.seed_everything(0, verbose=False)
        members.append(build_module(compose_config([f"data.mean={mean}"])))
    g, d = StackedNets([m.generator for m in members]), StackedNets([m.discriminator for m in members])
    z, x = torch.rand(2, 256, 8), torch.randn(2, 256, 1)
    for k, m in enumerate(members):
        torch.testing.assert_close(g(z)[k], m.generator(z[k]))
        torch.testing.assert_close(d(x)[k], m.discriminator(x[k]))


def test_a_run_recorded_before_the_key_reads_back_as_it_trained():
    """config.yaml of a 1D run from before model.standardize: resuming or sampling it must build the
    networks it trained (no unit layers), not fail on the missing key or add layers its weights lack."""
    from omegaconf import OmegaConf

    from ganlab.config.compose import to_yaml
    from ganlab.stored_runs import with_added_keys

    recorded = OmegaConf.to_container(compose_config([]))
    del recorded["model"]["standardize"]
    old = with_added_keys(OmegaConf.create(to_yaml(OmegaConf.create(recorded))))
    assert old.model.standardize is False
    assert build_module(old).discriminator.input_std is None
    assert with_added_keys(compose_config([])).model.standardize is True  # a new run keeps its own value
