"""The bandit baselines (pure) and the dopamine network against them on a short contextual bandit."""
from __future__ import annotations

import numpy as np
import pytest

from neurox.bench._bandits import (BASELINES, contextual_schedule, discounted_ucb, regret_curve, reward_ratio,
                                   sliding_window_ucb, thompson, ucb1)
from neurox.bench._brain_plasticity import arm_schedule, measure_contextual_bandit
from neurox.bench._plots import plot_brain


def test_ucb1_tries_every_arm_once_first_then_settles_on_the_best():
    schedule = np.tile([0.2, 0.9, 0.5], (2000, 1))
    chosen = ucb1(schedule, np.random.default_rng(0))
    assert sorted(chosen[:3]) == [0, 1, 2]
    assert np.mean(chosen[-500:] == 1) > 0.9


def test_the_windowed_and_discounted_ucbs_follow_a_moving_best_arm_where_stationary_ones_lag():
    schedule = np.vstack([np.tile([0.9, 0.2], (3000, 1)), np.tile([0.2, 0.9], (1000, 1))])
    after = slice(3300, 4000)
    share = {f.__name__: float(np.mean(f(schedule, np.random.default_rng(1))[after] == 1))
             for f in (ucb1, thompson, sliding_window_ucb, discounted_ucb)}
    assert share["sliding_window_ucb"] > 0.8 and share["discounted_ucb"] > 0.8, share
    assert share["thompson"] < 0.5, share  # 3,000 pulls of evidence for the old arm take long to outweigh


def test_contextual_baselines_keep_one_learner_per_context():
    means, contexts = contextual_schedule(arms=5, contexts=3, pulls=3000, rng=np.random.default_rng(2))
    best = means.argmax(axis=1)
    assert len({int(best[contexts == c][0]) for c in range(3)}) == 3  # each context its own best arm
    chosen = thompson(means, np.random.default_rng(3), contexts)
    assert np.mean(chosen[-1000:] == best[-1000:]) > 0.8
    assert reward_ratio(means, chosen) > reward_ratio(means, thompson(means, np.random.default_rng(3))) + 0.1


def test_regret_curves_are_cumulative_and_zero_for_the_best_arm():
    schedule = arm_schedule(4, 1000, 1, np.random.default_rng(4))
    assert regret_curve(schedule, schedule.argmax(axis=1)) == [0.0] * 50
    curve = regret_curve(schedule, np.zeros(1000, dtype=np.int64), points=20)
    assert len(curve) == 20 and curve == sorted(curve) and curve[-1] > 0
    assert set(BASELINES) == {"ucb1", "thompson", "sliding_window_ucb", "discounted_ucb"}


@pytest.mark.timeout(120)
def test_a_live_dopamine_network_learns_a_contextual_bandit_near_the_best_baseline(tmp_path, no_stray_processes):
    result = measure_contextual_bandit(pulls=1500, seed=0)
    (png,) = plot_brain({"contextual": result}, str(tmp_path))  # --plot: its cumulative regret
    with open(png, "rb") as figure:
        assert png.endswith("contextual_regret.png") and figure.read(4) == b"\x89PNG"
    random = float(np.mean(contextual_schedule(10, 4, 1500, np.random.default_rng(0))[0].mean(axis=1)) / 0.9)
    assert result["contextual_reward_ratio"] > random + 0.3, result
    assert result["contextual_reward_vs_best_baseline"] > 0.8, result
    assert len(result["regret_curves"]["network"]) == len(result["regret_at_pulls"]) == 50
