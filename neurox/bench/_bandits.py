"""The field's bandit baselines, pure: UCB1, Thompson sampling, sliding-window and discounted UCB.

Each plays a schedule (one row per pull: every arm's reward probability then) with Bernoulli rewards
and returns the arm it chose at each pull; ``contexts`` (one per pull) gives a contextual bandit, where
the baseline keeps one learner per context (disjoint: the standard answer when contexts are few and
discrete). Regret is measured on the means (pseudo-regret), so curves do not carry the coin's noise.
Hyperparameters are the published ones: UCB1's sqrt(2 ln t / n) (Auer et al. 2002), Thompson's Beta(1, 1)
prior, the sliding window tau = 2 sqrt(T ln T / breakpoints) and the discount
gamma = 1 - sqrt(breakpoints / T) / 4 of Garivier & Moulines (2011).
"""
from __future__ import annotations

import math

import numpy as np


def _per_context(choose, schedule: np.ndarray, rng: np.random.Generator, contexts: np.ndarray | None) -> np.ndarray:
    """Run ``choose(state, t, arms)`` / update per context; returns the chosen arms."""
    pulls, arms = schedule.shape
    contexts = np.zeros(pulls, dtype=np.int64) if contexts is None else contexts
    states: dict[int, dict] = {}
    chosen = np.empty(pulls, dtype=np.int64)
    for t in range(pulls):
        state = states.setdefault(int(contexts[t]), {"t": 0, "history": [], "n": np.zeros(arms),
                                                     "s": np.zeros(arms)})
        arm = choose(state, arms, rng)
        reward = float(rng.random() < schedule[t, arm])
        state["t"] += 1
        state["history"].append((arm, reward))
        state["n"][arm] += 1
        state["s"][arm] += reward
        chosen[t] = arm
    return chosen


def ucb1(schedule, rng, contexts=None) -> np.ndarray:
    def choose(state, arms, rng):
        n, s, t = state["n"], state["s"], state["t"]
        if (n == 0).any():
            return int(np.flatnonzero(n == 0)[0])
        return int(np.argmax(s / n + np.sqrt(2 * math.log(t) / n)))
    return _per_context(choose, schedule, rng, contexts)


def thompson(schedule, rng, contexts=None) -> np.ndarray:
    def choose(state, arms, rng):
        return int(np.argmax(rng.beta(1 + state["s"], 1 + state["n"] - state["s"])))
    return _per_context(choose, schedule, rng, contexts)


def sliding_window_ucb(schedule, rng, contexts=None, breakpoints: int = 1) -> np.ndarray:
    pulls = len(schedule)
    tau = max(10, int(2 * math.sqrt(pulls * math.log(pulls) / max(breakpoints, 1))))

    def choose(state, arms, rng):
        recent = state["history"][-tau:]
        n, s = np.zeros(arms), np.zeros(arms)
        for arm, reward in recent:
            n[arm] += 1
            s[arm] += reward
        if (n == 0).any():
            return int(np.flatnonzero(n == 0)[0])
        return int(np.argmax(s / n + np.sqrt(0.6 * math.log(min(state["t"], tau)) / n)))
    return _per_context(choose, schedule, rng, contexts)


def discounted_ucb(schedule, rng, contexts=None, breakpoints: int = 1) -> np.ndarray:
    gamma = 1 - math.sqrt(max(breakpoints, 1) / len(schedule)) / 4

    def choose(state, arms, rng):
        if state["history"]:
            arm, reward = state["history"][-1]
            state["dn"] = state.get("dn", np.zeros(arms)) * gamma
            state["ds"] = state.get("ds", np.zeros(arms)) * gamma
            state["dn"][arm] += 1
            state["ds"][arm] += reward
        n, s = state.get("dn", np.zeros(arms)), state.get("ds", np.zeros(arms))
        if (n == 0).any():
            return int(np.flatnonzero(n == 0)[0])
        return int(np.argmax(s / n + 2 * np.sqrt(0.6 * math.log(n.sum()) / n)))
    return _per_context(choose, schedule, rng, contexts)


BASELINES = {"ucb1": ucb1, "thompson": thompson, "sliding_window_ucb": sliding_window_ucb,
             "discounted_ucb": discounted_ucb}


def regret_curve(schedule: np.ndarray, chosen: np.ndarray, points: int = 50) -> list[float]:
    """Cumulative pseudo-regret (best mean - chosen arm's mean), at ``points`` evenly spaced pulls."""
    regret = np.cumsum(schedule.max(axis=1) - schedule[np.arange(len(chosen)), chosen])
    at = np.linspace(0, len(chosen) - 1, min(points, len(chosen))).astype(int)
    return [round(float(regret[i]), 2) for i in at]


def reward_ratio(schedule: np.ndarray, chosen: np.ndarray) -> float:
    """Expected reward of the choices over the best arm's (on the means)."""
    return float(schedule[np.arange(len(chosen)), chosen].sum() / schedule.max(axis=1).sum())


def contextual_schedule(arms: int, contexts: int, pulls: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A stationary contextual bandit: each context has its own best arm (paying 0.9, the others
    0.1-0.6), different contexts different best arms; a context drawn uniformly at each pull.
    Returns (each pull's means, each pull's context)."""
    table = rng.uniform(0.1, 0.6, (contexts, arms))
    best = rng.permutation(arms)[:contexts] if contexts <= arms else rng.integers(arms, size=contexts)
    table[np.arange(contexts), best] = 0.9
    drawn = rng.integers(contexts, size=pulls)
    return table[drawn], drawn
