"""Does AMC's agent learn? Its policy against the two policies it must beat, at the same budget.

- uniform: one pruning ratio for every layer (each bounded by its a_max), the smallest
  that meets the budget (bisection; the resource falls as the ratio grows);
- random: `n` policies of uniform random actions in [0, a_max[t]], limited by the same
  action clipping as the agent's (so every one meets the budget); the best of them by
  reward is random search with `n` evaluations.

All are scored like the search scores an episode (validation subset, no finetuning) and,
for the three chosen policies, on the test set without finetuning: the search chose on
the validation subset, so the test set gives an unbiased comparison.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from .train import evaluate

__all__ = ["uniform_policy", "random_policies", "score_baselines"]


def _kept_at(env, a: float) -> list[int]:
    return [max(int(math.floor((1 - min(a, b)) * n + 1e-9)), k0)
            for b, n, k0 in zip(env.a_max, env.alive, env.kept_min)]


def uniform_policy(env, iters: int = 40) -> tuple[float, list[int]]:
    """(ratio, kept per layer): the smallest common ratio whose pruning meets the budget."""
    lo, hi = 0.0, max(env.a_max)
    if env._value(_kept_at(env, lo)) <= env.budget:
        return lo, _kept_at(env, lo)
    for _ in range(iters):
        mid = (lo + hi) / 2
        if env._value(_kept_at(env, mid)) <= env.budget:
            hi = mid
        else:
            lo = mid
    return hi, _kept_at(env, hi)


def random_policies(env, n: int, rng: np.random.Generator) -> list[dict]:
    """`n` episodes of uniform random actions through the environment: reward and info each."""
    out = []
    for _ in range(n):
        env.reset()
        for t in range(env.T):
            env.step(float(rng.uniform(0.0, env.a_max[t])))
        reward, info = env.finish()
        out.append({"reward": reward, **info})
    return out


def _score(env, kept, splits) -> dict:
    env.reset()
    env.kept = list(kept)
    env.t = env.T
    reward, info = env.finish()
    env.apply(kept)
    return {"reward": reward, "val_acc": info["val_acc"], "test_acc": evaluate(env.work, splits.x_test, splits.y_test),
            "kept": list(kept), "value": info[env.cfg.constraint], "budget_met": info["budget_met"]}


def score_baselines(env, episodes: list[dict], best: dict, splits, n: int, rng: np.random.Generator) -> dict:
    """The search's best policy, the uniform policy and random search with `n` policies,
    before finetuning; `agent_wins`: the search's policy beats both on the test set."""
    ratio, kept_u = uniform_policy(env)
    rand = random_policies(env, n, rng)
    top = max(rand, key=lambda r: r["reward"])
    res = {"agent": _score(env, best["kept"], splits) | {"episode": best["episode"], "warmup": best["warmup"]},
           "uniform": _score(env, kept_u, splits) | {"ratio": ratio},
           "random_best": _score(env, top["kept"], splits), "random_n": n,
           "random_mean_val_acc": statistics.fmean(r["val_acc"] for r in rand),
           "agent_episodes_mean_val_acc": statistics.fmean(e["val_acc"] for e in episodes if not e["warmup"])
           if any(not e["warmup"] for e in episodes) else None}
    res["agent_wins"] = (res["agent"]["test_acc"] > res["uniform"]["test_acc"]
                         and res["agent"]["test_acc"] > res["random_best"]["test_acc"])
    return res
