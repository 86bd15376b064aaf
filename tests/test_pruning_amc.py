"""AMC (pruning/amc.py): state embedding, action limiting, DDPG updates, budgets (the CLI is
tested in test_pruning_cli.py)."""

import json
import math

import numpy as np
import pytest
import torch

from eie.pruning.amc import N_FEATURES, AMCConfig, AMCEnv, DDPG, run_amc
from eie.pruning.registry import a_max_list
from eie.pruning.models import ConvNet, prunable_layers
from eie.pruning.latency import EIELatency
from eie.pruning.masks import clone_model, get_mask

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small(train_mlp):
    return train_mlp(6, sizes=(64, 32, 16, 10))


def tiny(**kw):
    base = dict(episodes=12, warmup=4, hidden=32, batch_size=8, updates_per_episode=4, finetune_epochs=1,
                budget=0.3, n_pe=2, n_calibration=4, seed=1)
    base.update(kw)
    return AMCConfig(**base)


def test_state_embedding(small, splits):
    env = AMCEnv(small, splits, tiny(budget=0.9))
    assert env.T == 3
    dense = [2 * 64 * 32, 2 * 32 * 16, 2 * 16 * 10]
    assert env.dense_flops == sum(dense)
    s = env.reset()
    assert s.shape == (N_FEATURES,) and s.dtype == np.float32
    assert np.all(s >= 0) and np.all(s <= 1)
    # (t, n_out, n_in, h, w, stride, k, FLOPs, reduced, rest, a_prev)
    assert s[0] == 0 and s[1] == 1.0 and s[2] == 1.0 and s[7] == 1.0
    assert list(s[3:7]) == [1, 1, 1, 1]                      # FC: 1x1 input, stride 1, kernel 1
    assert s[8] == 0 and s[9] == pytest.approx((dense[1] + dense[2]) / sum(dense)) and s[10] == 0
    s1, a, done = env.step(0.5)
    assert not done and a == pytest.approx(0.5, abs=1e-3)
    assert s1[0] == pytest.approx(0.5) and s1[1] == pytest.approx(16 / 32) and s1[10] == pytest.approx(a)
    assert s1[8] == pytest.approx(a * dense[0] / sum(dense), abs=1e-3)
    # conv layers: kernel, stride and feature-map size appear in the embedding
    cenv = AMCEnv(ConvNet((8, 8)), splits, tiny())
    st = cenv.static
    assert [int(v) for v in st[0][3:7]] == [8, 8, 1, 3] and [int(v) for v in st[1][3:7]] == [8, 8, 1, 3]
    assert st[0][7] == 2 * 8 * 1 * 9 * 64                      # 2 x weights x output positions
    assert [int(v) for v in st[2][3:7]] == [1, 1, 1, 1]


def test_flops_action_limiting_is_tight(small, splits):
    cfg = tiny(budget=0.25)
    env = AMCEnv(small, splits, cfg)
    env.reset()
    for _ in range(env.T):          # the agent asks for no pruning at all
        env.step(0.0)
    f = env.flops(env.kept)
    assert f <= env.budget
    assert f > env.budget - 2 * 2     # as much as the budget allows (integer weights, 2 FLOPs each)
    # the first layers keep all they can; the last ones pay
    env.reset()
    k0 = env.clip(0.0)
    rest_min = sum(fa * km for fa, km in zip(env.factor[1:], env.kept_min[1:]))
    assert k0 == math.floor((env.budget - rest_min) / env.factor[0])
    with pytest.raises(ValueError):
        AMCEnv(small, splits, tiny(budget=0.01, a_max=0.9))     # 10 % left everywhere > 1 % budget


def test_search_respects_flops_budget_and_agent_learns(small, splits, tmp_path):
    cfg = tiny()
    res = run_amc(small, splits, cfg, out_dir=tmp_path, keep_agent=True)
    agent, env = res["agent_obj"], res["env"]
    assert env.a_max == [cfg.a_max, cfg.a_max, cfg.a_max_last]
    for e in res["episodes"]:
        assert e["flops"] <= res["budget"] and e["budget_met"]
        assert e["flops"] == env.flops(e["kept"])
        assert all(0 <= a <= b + 1e-9 for a, b in zip(e["actions"], env.a_max))
    assert res["final"]["flops"] <= res["budget"] and res["final"]["budget_met"]
    # the finetuned network's masks are the best policy's
    for (n, m), k in zip(prunable_layers(res["model"]), res["best"]["kept"]):
        assert int(get_mask(m).sum()) == k
        assert int((m.weight_orig * m.weight_mask != 0).sum()) <= k
    assert res["best"]["reward"] == max(e["reward"] for e in res["episodes"])
    # replay buffer: every step of every episode; updates after warm-up only
    assert len(agent.buffer) == cfg.episodes * env.T
    assert agent.updates == (cfg.episodes - cfg.warmup) * cfg.updates_per_episode
    losses = [e["critic_loss"] for e in res["episodes"] if not e["warmup"]]
    assert len(losses) == cfg.episodes - cfg.warmup and all(math.isfinite(x) for x in losses)
    assert all(e["critic_loss"] is None for e in res["episodes"] if e["warmup"])
    fresh = DDPG(N_FEATURES, cfg)                         # the same seed: the initial networks
    for net, net0 in ((agent.actor, fresh.actor), (agent.critic, fresh.critic), (agent.critic_t, fresh.critic_t)):
        assert any(not torch.equal(p, p0) for p, p0 in zip(net.parameters(), net0.parameters()))
    # target networks trail the online ones (soft updates, tau < 1)
    assert any(not torch.equal(p, pt) for p, pt in zip(agent.actor.parameters(), agent.actor_t.parameters()))
    # exploration after warm-up: proposals are not the clipped actor means only
    post = [e["proposed"][0] for e in res["episodes"] if not e["warmup"]]
    assert len(set(np.round(post, 6))) == len(post)
    data = json.loads((tmp_path / "amc.json").read_text())
    assert data["final"]["flops"] == res["final"]["flops"] and (tmp_path / "amc.png").stat().st_size > 1000


def test_deterministic(small, splits):
    cfg = tiny(episodes=8, warmup=3, finetune_epochs=0)
    a, b = run_amc(small, splits, cfg), run_amc(small, splits, cfg)
    assert [e["reward"] for e in a["episodes"]] == [e["reward"] for e in b["episodes"]]
    assert [e["actions"] for e in a["episodes"]] == [e["actions"] for e in b["episodes"]]
    assert a["final"] == b["final"]


def test_cycles_budget_holds_on_the_cycle_model(small, splits):
    cfg = tiny(constraint="cycles", budget=0.4, episodes=5, warmup=2, reward="error_log")
    res = run_amc(small, splits, cfg, keep_agent=True)
    env = res["env"]
    fresh = EIELatency(splits.x_train[:cfg.n_calibration], n_pe=cfg.n_pe)   # uncached re-measurement
    for e in res["episodes"]:
        assert e["cycles"] <= res["budget"]
        ws = [env.pruned_weight(t, k).numpy().astype(np.float64) for t, k in enumerate(e["kept"])]
        assert fresh.of_weights(ws, fresh.fc_input(small)) == e["cycles"]
        assert e["reward"] == pytest.approx(-(1 - e["val_acc"]) * math.log(e["cycles"]))
    assert res["final"]["cycles"] <= res["budget"] and res["final"]["budget_met"]
    assert fresh(res["model"]) == res["final"]["cycles"]
    assert res["budget"] == pytest.approx(0.4 * res["env"].dense_value)
    assert res["dense"]["cycles"] == pytest.approx(res["env"].dense_value)


def test_per_layer_bounds_hold_and_spare_the_output_layer(small, splits):
    """AMC's action_max per layer: no action prunes a layer beyond its bound, and the
    budget is met by pruning the earlier layers harder, never by starving the last one."""
    cfg = tiny(budget=0.1, a_max=0.97, a_max_last=0.6)
    env = AMCEnv(small, splits, cfg)
    assert env.a_max == [0.97, 0.97, 0.6]
    assert env.kept_min == [math.ceil(0.03 * 64 * 32), math.ceil(0.03 * 32 * 16), math.ceil(0.4 * 16 * 10)]
    rng = np.random.default_rng(0)
    plans = [[0.0] * 3, [0.999] * 3, [0.0, 0.0, 0.999]] + [list(rng.uniform(0, 1, 3)) for _ in range(40)]
    for plan in plans:
        env.reset()
        effs = [env.step(a)[1] for a in plan]
        assert all(a <= b + 1e-9 for a, b in zip(effs, env.a_max))
        assert all(k >= km for k, km in zip(env.kept, env.kept_min))
        assert env.flops(env.kept) <= env.budget
        assert env.kept[-1] >= 0.4 * 16 * 10              # the output layer keeps >= 40 % whatever came before
    # the agent asks for nothing: layer 0 is limited so that the rest can still end at their bounds
    env.reset()
    env.step(0.0)
    rest_min = sum(f * k for f, k in zip(env.factor[1:], env.kept_min[1:]))
    assert env.factor[0] * env.kept[0] == pytest.approx(env.budget - rest_min, abs=env.factor[0])
    # one bound per layer; a_max_last=None: the same bound everywhere
    assert AMCEnv(small, splits, tiny(a_max=(0.8, 0.9, 0.7))).a_max == [0.8, 0.9, 0.7]
    assert AMCEnv(small, splits, tiny(a_max=0.9, a_max_last=None)).a_max == [0.9] * 3
    with pytest.raises(ValueError, match="3 layers"):
        AMCEnv(small, splits, tiny(a_max=(0.5, 0.9)))
    with pytest.raises(ValueError, match="infeasible"):      # 40 % of the output layer alone is over 1 %
        AMCEnv(small, splits, tiny(budget=0.01, a_max=0.999, a_max_last=0.6))
    for bad in (dict(a_max=(0.5, 1.0, 0.5)), dict(a_max_last=0.0), dict(reward_batches=-1), dict(reward_lr=0)):
        with pytest.raises(ValueError):
            tiny(**bad)
    assert a_max_list("0.9") == 0.9 and a_max_list("0.9,0.95,0.5") == (0.9, 0.95, 0.5)


def test_returns_the_best_rewarded_policy_not_the_last(small, splits, monkeypatch):
    """The search keeps the best policy it has seen: with a reward that peaks in episode 5
    and falls afterwards, that episode's policy is the one finetuned and returned."""
    finish = AMCEnv.finish
    count = {"ep": 0}

    def peaked(self):
        _, info = finish(self)
        ep = count["ep"]
        count["ep"] += 1
        return -abs(ep - 5) - 0.01 * ep, info

    monkeypatch.setattr(AMCEnv, "finish", peaked)
    cfg = tiny(episodes=10, warmup=3, finetune_epochs=1)
    res = run_amc(small, splits, cfg)
    eps = res["episodes"]
    assert res["best"]["episode"] == 5 and res["best"]["reward"] == max(e["reward"] for e in eps)
    assert res["best"]["kept"] == eps[5]["kept"] != eps[-1]["kept"]
    for (n, m), k in zip(prunable_layers(res["model"]), eps[5]["kept"]):
        assert int(get_mask(m).sum()) == k
    assert res["final"]["kept"] == eps[5]["kept"]


def test_reward_after_a_short_finetune(small, splits):
    """reward_batches > 0: the Error is measured after that many masked Adam steps on a copy;
    the working copy keeps its weights, the same policy gets the same reward, pruned
    weights stay zero."""
    cfg = tiny(budget=0.06, reward_batches=30)
    env, env0 = AMCEnv(small, splits, cfg), AMCEnv(small, splits, tiny(budget=0.06))
    w_before = [w.clone() for w in env.w]
    out = []
    for e in (env, env, env0):
        e.reset()
        for a in (0.95, 0.95, 0.6):
            e.step(a)
        out.append(e.finish())
    (r1, i1), (r2, i2), (r0, i0) = out
    assert r1 == r2 and i1["kept"] == i2["kept"] == i0["kept"]
    assert i1["val_acc"] > i0["val_acc"]                    # a few steps recover much of the pruning loss
    layers = dict(prunable_layers(env.work))
    for t, name in enumerate(env.names):                      # the working copy is untouched
        torch.testing.assert_close(layers[name].weight_orig, w_before[t], rtol=0, atol=0)
    ft = env.short_finetune(env.apply(env.kept, clone_model(env.work)))
    for t, (name, m) in enumerate(prunable_layers(ft)):
        assert int((m.weight_orig * m.weight_mask != 0).sum()) <= env.kept[t]


def test_uniform_and_random_policies_meet_the_budget(small, splits):
    """The baselines AMC's agent is measured against (amc_baselines.py): the uniform policy
    is the smallest common ratio that meets the budget; random policies all meet it."""
    from eie.pruning.amc_baselines import random_policies, uniform_policy

    for constraint in ("flops", "weights"):
        env = AMCEnv(small, splits, tiny(constraint=constraint, budget=0.25))
        ratio, kept = uniform_policy(env)
        assert env._value(kept) <= env.budget
        worse = [max(int(math.floor((1 - min(ratio - 0.01, b)) * n + 1e-9)), k0)
                 for b, n, k0 in zip(env.a_max, env.alive, env.kept_min)]
        assert env._value(worse) > env.budget                 # a slightly smaller ratio does not fit
        assert all(1 - k / n <= b + 1e-9 for k, n, b in zip(kept, env.alive, env.a_max))
        rand = random_policies(env, 5, np.random.default_rng(0))
        assert len(rand) == 5 and all(r["budget_met"] for r in rand)
        assert len({tuple(r["kept"]) for r in rand}) > 1       # they differ
    dense_w = sum(env.alive)
    assert env.dense_value == dense_w                         # weights: every weight counts one


def test_amc_reports_the_learning_check(small, splits):
    res = run_amc(small, splits, tiny(baseline_policies=6))
    b = res["baselines"]
    assert set(b) >= {"agent", "uniform", "random_best", "random_mean_val_acc", "agent_wins"}
    assert b["agent"]["kept"] == res["best"]["kept"] and b["agent"]["val_acc"] == res["best"]["val_acc"]
    assert all(b[k]["budget_met"] for k in ("agent", "uniform", "random_best"))
    assert b["agent_wins"] == (b["agent"]["test_acc"] > max(b["uniform"]["test_acc"], b["random_best"]["test_acc"]))
