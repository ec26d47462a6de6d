"""Search spaces: quasi-random points, fixed points, the hyperparameter object."""

from __future__ import annotations

import math

from algoperf.submission.search_space import make_hyperparameters, parse_search_space

SPACE = {
    "learning_rate": {"min": 1e-4, "max": 1e-1, "scaling": "log"},
    "one_minus_beta1": {"min": 0.01, "max": 0.2, "scaling": "linear"},
    "warmup_factor": {"feasible_points": [0.02, 0.05]},
}


def test_same_seed_same_points_and_other_seed_other_points():
    space = parse_search_space(SPACE)
    assert space.points(8, seed=1) == space.points(8, seed=1)
    assert space.points(8, seed=1) != space.points(8, seed=2)


def test_points_respect_bounds_scaling_and_feasible_points():
    points = parse_search_space(SPACE).points(64, seed=0)
    lrs = [p["learning_rate"] for p in points]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
    # Log scaling: about half the points fall below the geometric midpoint 10^-2.5.
    below = sum(lr < 10 ** -2.5 for lr in lrs)
    assert 24 <= below <= 40
    assert {p["warmup_factor"] for p in points} == {0.02, 0.05}
    assert all(0.01 <= p["one_minus_beta1"] <= 0.2 for p in points)


def test_halton_points_fill_the_space_evenly():
    # A quasi-random sequence covers [0, 1) far more evenly than its size would suggest.
    points = parse_search_space({"x": {"min": 0.0, "max": 1.0}}).points(100, seed=0)
    counts = [0] * 10
    for p in points:
        counts[min(int(p["x"] * 10), 9)] += 1
    assert max(counts) - min(counts) <= 3


def test_fixed_points_are_taken_in_order_and_cycle():
    space = parse_search_space([{"lr": 1}, {"lr": 2}])
    assert [p["lr"] for p in space.points(5)] == [1, 2, 1, 2, 1]


def test_hyperparameters_are_attribute_access_like_algoperf():
    hp = make_hyperparameters({"learning_rate": 0.1, "beta2": 0.99})
    assert hp.learning_rate == 0.1 and hp.beta2 == 0.99
    assert not hasattr(hp, "label_smoothing")
    assert make_hyperparameters(None) is None
    assert math.isclose(hp._asdict()["beta2"], 0.99)
