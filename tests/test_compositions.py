"""Any composition a user types either trains or stops with one line that names the bad value.

Every pair of values of two factors (the data; a model with a preprocess it reads; noise; optim;
and the training keys that change the update: loss, R1, label smoothing, EMA, D steps) appears in
at least one composition below; each is composed, built, trained for a few iterations and evaluated.
A probe like this found a crash that the tests of one option at a time missed (`model=minibatch
train.r1_gamma=1`: torch has no second derivative of `cdist`). A few iterations show crashes and
instant blow-ups only; whether a composition trains *well* is the recipes' tests' and the matrix
benchmark's question.
"""

from __future__ import annotations

import math

import pytest
from helpers import train_untracked

from ganlab.config.compose import ConfigFamily
from ganlab.errors import ConfigError

# model and preprocess travel together: most transforms suit one kind of D only (a batch D reads
# sorted, raw, moments, diffs or variances; a per-sample D reads none or pack), which a refusal
# already covers (test_config), so pairing them freely would spend most rows on refusals
DISCRIMINATORS = ["model=quantile preprocess=auto", "model=quantile preprocess=sorted",
                  "model=quantile preprocess=pack", "model=devnag preprocess=auto", "model=devnag preprocess=raw",
                  "model=devnag preprocess=diffs", "model=devnag preprocess=variances",
                  "model=devnag preprocess=moments", "model=vanilla preprocess=auto", "model=vanilla preprocess=pack",
                  "model=minibatch preprocess=auto", "model=conditional preprocess=auto"]
FACTORS: dict[str, list[str]] = {
    "data": ["gaussian_1d", "mixture_1d", "ring8", "grid25", "image_density", "conditional_image_density", "digits"],
    "discriminator": DISCRIMINATORS,
    "noise": ["auto", "normal", "uniform", "stratified"],
    "optim": ["adam", "sgd"],
    "train.loss": ["bce", "bce_saturating", "clamped_log"],
    "train.r1_gamma": ["0.0", "0.1"],  # on: D's input gradient is differentiated again (minibatch's cdist was not)
    "train.label_smoothing": ["0.0", "0.1"],
    "train.ema_decay": ["0.999", "0.0"],
    "train.d_steps": ["1", "2"],
}
ITERATIONS = 3


def all_pairs(factors: dict[str, list[str]]) -> list[dict[str, str]]:
    """A small set of rows holding every pair of values of two factors (greedy, deterministic): each
    row starts from the first pair not yet held and takes, factor by factor, the value that adds the
    most pairs not yet held."""
    names = list(factors)
    order = {name: i for i, name in enumerate(names)}

    def pair(a: str, va: str, b: str, vb: str) -> tuple[str, str, str, str]:
        return (a, va, b, vb) if order[a] < order[b] else (b, vb, a, va)

    missing = {pair(a, va, b, vb) for i, a in enumerate(names) for b in names[i + 1:]
               for va in factors[a] for vb in factors[b]}
    rows: list[dict[str, str]] = []
    while missing:
        a, va, b, vb = min(missing, key=lambda p: (order[p[0]], factors[p[0]].index(p[1]), order[p[2]],
                                                   factors[p[2]].index(p[3])))
        row = {a: va, b: vb}
        for name in names:
            if name not in row:
                row[name] = max(factors[name], key=lambda v: sum(pair(k, row[k], name, v) in missing for k in row))
        missing -= {pair(x, row[x], y, row[y]) for i, x in enumerate(names) for y in names[i + 1:]}
        rows.append({name: row[name] for name in names})
    return rows


def test_all_pairs_holds_every_pair_and_no_more_rows_than_needed():
    factors = {"a": ["1", "2", "3"], "b": ["x", "y"], "c": ["p", "q"]}
    rows = all_pairs(factors)
    for a in factors["a"]:
        for b in factors["b"]:
            assert any(r["a"] == a and r["b"] == b for r in rows)
    assert all(any(r["b"] == b and r["c"] == c for r in rows) for b in "xy" for c in "pq")
    assert len(rows) <= 3 * 2 + 2  # 6 pairs of a x b at least; a greedy cover stays close


ROWS = all_pairs(FACTORS)
CHUNKS = 4  # the rows train in four tests, which the test workers share (as one test it took 45 s, often last)


def _compose(family: ConfigFamily, row: dict[str, str]) -> tuple[str, object]:
    """The row as a user types it, and its composed config (ConfigError if refused)."""
    typed = " ".join(v if k == "discriminator" else f"{k}={v}" for k, v in row.items())
    return typed, family.compose([*typed.split(), f"train.iterations={ITERATIONS}", "train.eval_samples=2048",
                                  "train.threads=1"])


def test_every_option_is_in_a_row_of_the_pairs_that_composes():
    """The cover is not mostly refusals: every option of every factor trains in some row (the chunks
    below train every row that composes). Rows are composed until every option is seen."""
    family = ConfigFamily()
    never = {(k, v) for k, values in FACTORS.items() for v in values}
    for row in ROWS:
        if not never & set(row.items()):
            continue
        try:
            _compose(family, row)
        except ConfigError:
            continue
        never -= set(row.items())
        if not never:
            break
    assert not never, never


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_pair_of_options_trains_or_is_refused_in_one_line(chunk, tmp_path, monkeypatch):
    """Each row of this chunk trains a few iterations to finite metrics, or is refused in one line
    naming a value the user typed (not one a recipe filled in) and what is allowed."""
    monkeypatch.chdir(tmp_path)
    family = ConfigFamily()
    trained = 0
    for row in ROWS[chunk::CHUNKS]:
        typed = " ".join(v if k == "discriminator" else f"{k}={v}" for k, v in row.items())
        try:
            _, cfg = _compose(family, row)
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and "Traceback" not in message, typed
            assert " is not allowed; " in message and message.split("=")[0] in {
                part.split("=")[0] for part in typed.split()}, (typed, message)
            continue
        try:
            metrics = train_untracked(cfg)
        except Exception as exc:  # which composition, not only torch's words
            raise AssertionError(f"{typed}: {type(exc).__name__}: {exc}") from exc
        undefined = {kl for kl, share in (("reverse_kl", "hq_share"), ("reverse_kl_full", "hq_share_full"))
                     if metrics.get(share) == 0}  # NaN while no sample is on a mode (docs/targets_2d.md)
        assert all(math.isfinite(v) for k, v in metrics.items() if k not in undefined), (typed, metrics)
        trained += 1
    assert trained, f"chunk {chunk} of the pairs trained nothing"


def test_a_typed_r1_too_strong_for_sgd_stops_with_a_reason_that_names_it():
    """Found by the pairs above when they typed R1 at 1 (they now type 0.1, which trains): SGD's
    1e-2 blows the picture target's D up within three iterations; the reason said only "try a
    smaller learning rate"."""
    from ganlab.config.compose import compose_config
    from ganlab.training.gan_module import NonFiniteLossError

    cfg = compose_config(["data=image_density", "model=vanilla", "optim=sgd", "train.r1_gamma=1", "train.iterations=10",
                          "train.threads=1"])
    with pytest.raises(NonFiniteLossError, match=r"; try a smaller learning rate or train\.r1_gamma \(now 1\)$"):
        train_untracked(cfg)
    cfg = compose_config(["data=image_density", "model=vanilla", "optim=sgd", "train.r1_gamma=0.1",
                          "train.iterations=10", "train.threads=1"])
    train_untracked(cfg)  # a tenth of it trains


def test_the_reason_names_r1_only_when_it_is_on():
    from ganlab.training.stabilizers import non_finite_reason

    assert non_finite_reason(3, float("nan"), 1.0, 0.0) == (
        "loss became non-finite at iteration 3 (D nan, G 1.0); try a smaller learning rate")
    assert non_finite_reason(3, float("inf"), 1.0, 0.25).endswith(
        "; try a smaller learning rate or train.r1_gamma (now 0.25)")
