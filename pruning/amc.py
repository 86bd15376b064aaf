"""AMC: AutoML for Model Compression (He, Lin, Liu, Wang, Li & Han, ECCV 2018).

A DDPG agent (Lillicrap et al., "Continuous control with deep reinforcement learning",
ICLR 2016) walks through the layers of a trained network and picks, for each layer t, a
continuous action a_t in [0, a_max[t]] (a_max[t] < 1): the fraction of that layer's
weights to remove (fine-grained magnitude pruning, the variant of AMC for fine-grained
pruning, which EIE executes). The per-layer bound a_max[t] is AMC's action_max (the
largest compression ratio of a single layer; 0.8 is the paper's usual value): by
default 0.98 for the hidden layers and 0.8 for the output layer, so that no budget can
cut the classifier down to a handful of weights. The state of layer t is AMC's 11-feature embedding

    (t, n_out, n_in, h, w, stride, k, FLOPs[t], reduced, rest, a_{t-1})

(h, w: input feature-map size, 1 for FC; k: kernel size, 1 for FC; reduced: FLOPs
removed in layers < t; rest: dense FLOPs of layers > t), the static features divided by
their largest value over the layers and the FLOP counts by the network's dense FLOPs.

Resource constraint by limiting actions (AMC, Sec. 3.3 and Algorithm 1): each action is
raised just enough that the budget can still be met if all later layers are pruned at
their a_max. For FLOPs
(2 x non-zero weights, x output positions for a conv layer) this is exact integer
arithmetic; for EIE cycles (golden cycle model, `latency.EIELatency`) the clipped
action is found by bisection between the agent's action and the pruning that the
previous step verified, so every layer's choice keeps a *measured* feasible completion
and the finished network meets the budget.

Reward: -Error (R_err) or -Error * log(resource) (R_FLOPs), Error = validation error of
the pruned network without finetuning (on a validation subset) or, with
`reward_batches` > 0, after that many Adam steps on the masked network (the same
batches for every episode, so policies are compared on equal terms): at tight budgets
the accuracy before finetuning is far below what finetuning recovers and ranks the
policies less well. As in AMC every
transition of an episode gets the episode's reward; the critic target is
y = R - b + gamma * Q'(s', mu'(s')) with b an exponential moving average of the rewards
and gamma = 1. Warm-up episodes take uniform random actions; afterwards the actor's
action gets truncated-normal exploration noise whose sigma decays every episode. Target
networks follow with soft updates (tau). The best-rewarded policy of the whole search
(not the last one: the actor may drift away from it) is finetuned at the end.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .data import Splits
from .latency import EIELatency, LatencySettings
from .masks import clone_model, get_mask, magnitude_order, refresh_weights, set_mask, sparsity_of, weight_of
from .models import fc_layers, prunable_layers
from .pipeline import progress_log
from .plots import plot_per_seed, pyplot, save_figure, write_result
from .train import TrainConfig, accuracy, evaluate, finetune_budget, train

__all__ = ["AMCConfig", "AMCEnv", "DDPG", "ReplayBuffer", "run_amc", "plot_amc", "run", "plots", "compare",
           "compare_note", "N_FEATURES"]

N_FEATURES = 11


@dataclass(frozen=True)
class AMCConfig(LatencySettings):
    constraint: str = "flops"       # "flops", "cycles" (EIE cycles per inference, FC layers) or "weights"
    layers: str = "all"             # flops: "all" (Linear + Conv2d) or "fc"; cycles: always the FC layers
    budget: float = 0.2             # <= 1: fraction of the dense value; > 1: absolute FLOPs / cycles
    reward: str = "error"           # "error": -Error; "error_log": -Error * log(FLOPs or cycles)
    episodes: int = 300
    warmup: int = 100
    a_max: float | tuple[float, ...] = 0.98   # largest action: every layer but the last, or one per layer
    a_max_last: float | None = 0.8  # the last (output) layer's bound when a_max is one value (None: a_max)
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    gamma: float = 1.0
    batch_size: int = 64
    buffer_size: int = 2000
    updates_per_episode: int = 10   # critic + actor updates after each post-warm-up episode
    sigma: float = 0.5
    sigma_decay: float = 0.99
    baseline_decay: float = 0.95
    val_samples: int = 0            # 0: the whole validation split
    reward_batches: int = 0         # > 0: the reward's Error is measured after this many finetuning batches
    reward_lr: float = 1e-3         # Adam learning rate of those batches
    finetune_epochs: int = 30
    lr: float = 1e-3
    lr_schedule: str = "constant"   # the final finetuning's LR schedule, optimiser, decay (train.TrainConfig)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    shift: int = 0                  # translation augmentation of the final finetuning (train.TrainConfig.shift)
    baseline_policies: int = 0      # > 0: also score uniform and this many random policies (amc_baselines.py)
    train_batch_size: int = 64
    n_calibration: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.layers not in ("all", "fc"):
            raise ValueError("layers must be 'all' or 'fc'")
        if self.constraint not in ("flops", "cycles", "weights"):
            raise ValueError("constraint must be 'flops', 'cycles' or 'weights'")
        if self.reward not in ("error", "error_log"):
            raise ValueError("reward must be 'error' or 'error_log'")
        bounds = self.a_max if isinstance(self.a_max, tuple) else (self.a_max,)
        if not bounds or not all(0 < a < 1 for a in bounds):
            raise ValueError("a_max must be in (0, 1) (one value, or one per layer)")
        if self.a_max_last is not None and not 0 < self.a_max_last < 1:
            raise ValueError("a_max_last must be in (0, 1) or None")
        if self.reward_batches < 0 or self.reward_lr <= 0:
            raise ValueError("reward_batches must be >= 0 and reward_lr > 0")
        if self.budget <= 0:
            raise ValueError("budget must be positive")
        if self.episodes < 1 or not 0 <= self.warmup <= self.episodes:
            raise ValueError("need episodes >= 1 and 0 <= warmup <= episodes")
        if not 0 < self.tau <= 1 or not 0 < self.sigma_decay <= 1 or not 0 <= self.baseline_decay < 1:
            raise ValueError("tau, sigma_decay in (0, 1]; baseline_decay in [0, 1)")

    def bounds(self, n_layers: int) -> list[float]:
        """a_max of each of `n_layers` layers (the last one is the output layer)."""
        if isinstance(self.a_max, tuple):
            if len(self.a_max) != n_layers:
                raise ValueError(f"a_max has {len(self.a_max)} values for {n_layers} layers")
            return [float(a) for a in self.a_max]
        last = self.a_max if self.a_max_last is None else self.a_max_last
        return [float(self.a_max)] * (n_layers - 1) + [float(last)]


# --------------------------------------------------------------------------- environment

class AMCEnv:
    """Layer-by-layer pruning of a copy of `model`; one episode = one action per layer."""

    def __init__(self, model: nn.Module, splits: Splits, cfg: AMCConfig, est: EIELatency | None = None):
        self.cfg = cfg
        self.work = clone_model(model)
        self.work.eval()
        pick = fc_layers if cfg.constraint == "cycles" or cfg.layers == "fc" else prunable_layers
        self.layers = pick(self.work)
        if cfg.constraint == "cycles":
            if est is None:
                raise ValueError("the cycles constraint needs an EIELatency estimator")
            if [n for n, _ in self.layers] != [n for n, _ in fc_layers(self.work)]:
                raise ValueError("cycles: the pruned layers must be the FC stack")
        self.est = est
        self.names = [n for n, _ in self.layers]
        self.T = len(self.layers)
        self.w = [weight_of(m) for _, m in self.layers]
        self.mask0 = [get_mask(m) for _, m in self.layers]
        self.order = [magnitude_order(w, m0) for w, m0 in zip(self.w, self.mask0)]
        self.alive = [len(o) for o in self.order]
        shapes = self._io_shapes(splits)
        feats, self.factor = [], []
        for t, (name, m) in enumerate(self.layers):
            (hin, win), (hout, wout) = shapes[name]
            k = m.kernel_size[0] if isinstance(m, nn.Conv2d) else 1
            s = m.stride[0] if isinstance(m, nn.Conv2d) else 1
            n_out, n_in = m.weight.shape[0], m.weight.shape[1]
            self.factor.append(2 * hout * wout)
            feats.append([t, n_out, n_in, hin, win, s, k, 2 * hout * wout * self.alive[t]])
        if cfg.constraint == "weights":   # the resource is the kept weights: every weight counts 1
            self.factor = [1] * len(self.factor)
        self.static = np.asarray(feats, dtype=np.float64)
        self.static_norm = self.static / np.maximum(np.abs(self.static).max(axis=0), 1e-12)
        self.dense_flops_layer = [f * a for f, a in zip(self.factor, self.alive)]
        self.dense_flops = float(sum(self.dense_flops_layer))
        self.a_max = cfg.bounds(self.T)
        self.kept_min = [int(math.ceil((1 - b) * a - 1e-9)) for b, a in zip(self.a_max, self.alive)]  # a_eff <= a_max
        n_val = cfg.val_samples or len(splits.y_val)
        self.x_val, self.y_val = splits.x_val[:n_val], splits.y_val[:n_val]
        self.x_train, self.y_train = torch.as_tensor(splits.x_train), torch.as_tensor(splits.y_train)
        if cfg.constraint == "cycles":
            self.fc_in = est.fc_input(self.work)
            self.dense_value = est.of_weights([w.numpy().astype(np.float64) for w in self.w], self.fc_in)
        else:
            self.dense_value = self.dense_flops
        self.budget = cfg.budget * self.dense_value if cfg.budget <= 1 else float(cfg.budget)
        floor_value = self._value(self.kept_min)
        if floor_value > self.budget:
            raise ValueError(f"budget {self.budget:.1f} is infeasible: pruning every layer at its a_max "
                             f"{[round(b, 4) for b in self.a_max]} still gives {floor_value:.1f} {cfg.constraint}")
        self.reset()

    @torch.no_grad()
    def _io_shapes(self, splits):
        shapes, hooks = {}, []
        for name, m in self.layers:
            def hook(mod, inp, out, name=name):
                i, o = inp[0], out
                shapes[name] = ((i.shape[2], i.shape[3]) if i.dim() == 4 else (1, 1),
                                (o.shape[2], o.shape[3]) if o.dim() == 4 else (1, 1))
            hooks.append(m.register_forward_hook(hook))
        try:
            self.work(torch.as_tensor(splits.x_train[:2]))
        finally:
            for h in hooks:
                h.remove()
        return shapes

    # weights / resource of a kept-count assignment
    def pruned_weight(self, t: int, kept: int) -> torch.Tensor:
        w = self.w[t].clone().view(-1)
        w[torch.as_tensor(self.order[t][:self.alive[t] - kept], dtype=torch.long)] = 0.0
        return w.view_as(self.w[t])

    def flops(self, kept) -> float:
        return float(sum(f * k for f, k in zip(self.factor, kept)))

    def cycles(self, kept) -> float:
        ws = [self.pruned_weight(t, k).numpy().astype(np.float64) for t, k in enumerate(kept)]
        return self.est.of_weights(ws, self.fc_in)

    def _value(self, kept) -> float:
        return self.cycles(kept) if self.cfg.constraint == "cycles" else self.flops(kept)

    # episode
    def state(self) -> np.ndarray:
        t = min(self.t, self.T - 1)
        reduced = sum(self.dense_flops_layer[j] - self.factor[j] * self.kept[j] for j in range(self.t))
        rest = sum(self.dense_flops_layer[t + 1:])
        return np.concatenate([self.static_norm[t], [reduced / self.dense_flops, rest / self.dense_flops,
                                                     self.prev_action]]).astype(np.float32)

    def reset(self) -> np.ndarray:
        self.t = 0
        self.kept = []
        self.prev_action = 0.0
        return self.state()

    def clip(self, action: float) -> int:
        """Kept weights of layer t for `action`, limited so that the budget stays reachable."""
        t = self.t
        a = float(np.clip(action, 0.0, self.a_max[t]))
        kept = max(int(math.floor((1 - a) * self.alive[t] + 1e-9)), self.kept_min[t])
        if self.cfg.constraint != "cycles":
            # integers: FLOPs (weights) <= budget  <=>  FLOPs <= floor(budget)
            prev = sum(f * k for f, k in zip(self.factor, self.kept))
            rest_min = sum(f * k for f, k in zip(self.factor[t + 1:], self.kept_min[t + 1:]))
            allowed = (math.floor(self.budget) - prev - rest_min) // self.factor[t]
            return max(min(kept, allowed), 0)
        # cycles: kept_min[t] with the rest at kept_min was verified feasible one step earlier
        def ok(k):
            return self.cycles(self.kept + [k] + self.kept_min[t + 1:]) <= self.budget
        if ok(kept):
            return kept
        lo, hi = self.kept_min[t], kept            # ok(lo) (verified before), not ok(hi)
        tol = max(1, self.alive[t] // 256)
        while hi - lo > tol:
            mid = (lo + hi) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def step(self, action: float):
        """Apply the (clipped) action to layer t: (next state, effective action, done)."""
        kept = self.clip(action)
        a_eff = 1.0 - kept / self.alive[self.t]
        self.kept.append(kept)
        self.prev_action = a_eff
        self.t += 1
        return self.state(), a_eff, self.t == self.T

    def mask(self, t: int, kept: int) -> torch.Tensor:
        """Layer t's mask keeping its `kept` largest-magnitude surviving weights."""
        m = self.mask0[t].clone().view(-1)
        m[torch.as_tensor(self.order[t][:self.alive[t] - kept], dtype=torch.long)] = 0.0
        return m.view_as(self.w[t])

    def apply(self, kept, model: nn.Module | None = None) -> nn.Module:
        """Install the masks of `kept` on `model` (default: the working copy)."""
        model = self.work if model is None else model
        layers = dict(prunable_layers(model))
        for t, name in enumerate(self.names):
            set_mask(layers[name], self.mask(t, kept[t]))
        return model

    def short_finetune(self, model: nn.Module) -> nn.Module:
        """`cfg.reward_batches` Adam steps (lr `cfg.reward_lr`) on `model`, masks kept by
        torch.nn.utils.prune; the same mini-batches every call (seeded by cfg.seed)."""
        gen = torch.Generator().manual_seed(self.cfg.seed)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.cfg.reward_lr)
        n, bs = len(self.y_train), self.cfg.train_batch_size
        perm, pos = torch.randperm(n, generator=gen), 0
        model.train()
        for _ in range(self.cfg.reward_batches):
            if pos + bs > n:                                  # a new epoch: reshuffle
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos:pos + bs]
            pos += bs
            loss = nn.functional.cross_entropy(model(self.x_train[idx]), self.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        return model

    def finish(self) -> tuple[float, dict]:
        """Reward and info of the finished episode: the pruned network's validation error,
        without finetuning or after `cfg.reward_batches` finetuning steps (on a copy: the
        working copy keeps the original weights)."""
        self.apply(self.kept)
        net = self.work
        if self.cfg.reward_batches > 0:
            net = self.short_finetune(clone_model(self.work))
        acc = evaluate(net, self.x_val, self.y_val)
        err = 1.0 - acc
        value = self._value(self.kept)
        if self.cfg.reward == "error":
            reward = -err
        else:
            reward = -err * math.log(max(value, 2.0))
        info = {"val_acc": acc, "flops": self.flops(self.kept), self.cfg.constraint: value,
                "kept": list(self.kept), "budget_met": value <= self.budget}
        return reward, info


# --------------------------------------------------------------------------- DDPG

class ReplayBuffer:
    def __init__(self, capacity: int, n_state: int):
        self.capacity = capacity
        self.s = np.zeros((capacity, n_state), np.float32)
        self.a = np.zeros((capacity, 1), np.float32)
        self.r = np.zeros((capacity, 1), np.float32)
        self.s2 = np.zeros((capacity, n_state), np.float32)
        self.done = np.zeros((capacity, 1), np.float32)
        self.n = 0
        self.pos = 0

    def __len__(self):
        return self.n

    def add(self, s, a, r, s2, done):
        i = self.pos
        self.s[i], self.a[i], self.r[i], self.s2[i], self.done[i] = s, a, r, s2, float(done)
        self.pos = (self.pos + 1) % self.capacity
        self.n = min(self.n + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int):
        idx = rng.integers(0, self.n, size=batch)
        return tuple(torch.as_tensor(x[idx]) for x in (self.s, self.a, self.r, self.s2, self.done))


def _mlp(n_in, hidden, n_out):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class DDPG:
    """Actor mu(s) in [0, 1] (sigmoid), critic Q(s, a), target copies with soft updates."""

    def __init__(self, n_state: int, cfg: AMCConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.actor = nn.Sequential(_mlp(n_state, cfg.hidden, 1), nn.Sigmoid())
        self.critic = _mlp(n_state + 1, cfg.hidden, 1)
        self.actor_t = copy.deepcopy(self.actor)
        self.critic_t = copy.deepcopy(self.critic)
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer = ReplayBuffer(cfg.buffer_size, n_state)
        self.baseline = None
        self.updates = 0

    @torch.no_grad()
    def mu(self, s) -> float:
        return float(self.actor(torch.as_tensor(s).unsqueeze(0)))

    def explore(self, s, sigma: float, rng: np.random.Generator, lo: float, hi: float) -> float:
        """mu(s) plus truncated-normal noise on [lo, hi]."""
        from scipy.stats import truncnorm  # scipy.stats (slow to import): deferred to exploration

        m = min(max(self.mu(s), lo), hi)
        if sigma <= 0:
            return m
        return float(truncnorm.rvs((lo - m) / sigma, (hi - m) / sigma, loc=m, scale=sigma, random_state=rng))

    def observe_reward(self, reward: float) -> None:
        b = self.cfg.baseline_decay
        self.baseline = reward if self.baseline is None else b * self.baseline + (1 - b) * reward

    def update(self, rng: np.random.Generator) -> tuple[float, float]:
        s, a, r, s2, done = self.buffer.sample(rng, self.cfg.batch_size)
        with torch.no_grad():
            q_next = self.critic_t(torch.cat([s2, self.actor_t(s2)], 1))
            y = r - (self.baseline or 0.0) + self.cfg.gamma * (1 - done) * q_next
        q = self.critic(torch.cat([s, a], 1))
        c_loss = nn.functional.mse_loss(q, y)
        self.opt_c.zero_grad()
        c_loss.backward()
        self.opt_c.step()
        a_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
        self.opt_a.zero_grad()
        a_loss.backward()
        self.opt_a.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_t), (self.critic, self.critic_t)):
                for p, pt in zip(net.parameters(), tgt.parameters()):
                    pt.mul_(1 - self.cfg.tau).add_(self.cfg.tau * p)
        self.updates += 1
        return c_loss.item(), a_loss.item()


# --------------------------------------------------------------------------- search + finetune

def run_amc(model: nn.Module, splits: Splits, cfg: AMCConfig = AMCConfig(), *, out_dir=None, log=None,
            keep_agent: bool = False) -> dict:
    """AMC search on a trained `model` (left unchanged), then finetuning of the best policy.

    Returns the result dict: `episodes` (actions, reward, accuracy, resource per
    episode), `best`, `final` (after finetuning), `agent` statistics, and the finetuned
    `model` (plus `agent` / `env` with keep_agent; neither goes to JSON). With
    `out_dir`, writes amc.json and amc.png there.
    """
    t0 = time.time()
    say = log or (lambda *a: None)
    est = cfg.latency(splits.x_train[:cfg.n_calibration])
    env = AMCEnv(model, splits, cfg, est if cfg.constraint == "cycles" else None)
    agent = DDPG(N_FEATURES, cfg)
    rng = np.random.default_rng(cfg.seed)
    sigma = cfg.sigma
    n_updates = cfg.updates_per_episode
    episodes, best = [], None
    c_losses, a_losses = [], []
    say(f"amc: {env.T} layers, dense {cfg.constraint} {env.dense_value:.1f}, budget {env.budget:.1f}")
    for ep in range(cfg.episodes):
        s = env.reset()
        steps = []
        for t in range(env.T):
            if ep < cfg.warmup:
                a = float(rng.uniform(0.0, env.a_max[t]))
            else:
                a = agent.explore(s, sigma, rng, 0.0, env.a_max[t])
            s2, a_eff, done = env.step(a)
            steps.append((s, a, a_eff, s2, done))
            s = s2
        reward, info = env.finish()
        for s_, _, a_eff, s2_, d in steps:
            agent.buffer.add(s_, a_eff, reward, s2_, d)
        agent.observe_reward(reward)
        ep_c = ep_a = None
        if ep >= cfg.warmup:
            ls = [agent.update(rng) for _ in range(n_updates)]
            ep_c, ep_a = float(np.mean([x[0] for x in ls])), float(np.mean([x[1] for x in ls]))
            c_losses.append(ep_c)
            a_losses.append(ep_a)
            sigma *= cfg.sigma_decay
        rec = {"episode": ep, "warmup": ep < cfg.warmup, "proposed": [x[1] for x in steps],
               "actions": [x[2] for x in steps], "reward": reward, "critic_loss": ep_c, "actor_loss": ep_a,
               **info}
        episodes.append(rec)
        if best is None or reward > best["reward"]:
            best = rec
        if (ep + 1) % max(1, cfg.episodes // 10) == 0:
            say(f"amc: episode {ep + 1}/{cfg.episodes}: reward {reward:.4f} (best {best['reward']:.4f} at "
                f"{best['episode']}), sigma {sigma:.3f}")

    baselines = None
    if cfg.baseline_policies > 0:
        from .amc_baselines import score_baselines  # the learning check (uniform / random policies)

        baselines = score_baselines(env, episodes, best, splits, cfg.baseline_policies, rng)
        say(f"amc: before finetuning, test acc: agent's best {baselines['agent']['test_acc']:.4f}, uniform "
            f"{baselines['uniform']['test_acc']:.4f}, best of {cfg.baseline_policies} random "
            f"{baselines['random_best']['test_acc']:.4f} (random mean {baselines['random_mean_val_acc']:.4f} val)")

    # finetune the best policy
    ft = env.apply(best["kept"], clone_model(env.work))
    refresh_weights(ft)
    if cfg.finetune_epochs > 0:
        train(ft, splits, TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.lr, batch_size=cfg.train_batch_size,
                                      seed=cfg.seed, lr_schedule=cfg.lr_schedule, optimizer=cfg.optimizer,
                                      weight_decay=cfg.weight_decay, shift=cfg.shift))
    ft.eval()
    refresh_weights(ft)
    ft_layers = [(n, dict(prunable_layers(ft))[n]) for n in env.names]
    fc_only = [n for n, _ in fc_layers(ft)] == [n for n, _ in prunable_layers(ft)]
    final = {"repruned_after_finetune": False}
    if fc_only or cfg.constraint == "cycles":
        final["cycles"] = est(ft)
    if cfg.constraint == "cycles" and final["cycles"] > env.budget:
        final.update(_reenforce_cycles(ft, env, est))
    kept_final = [int(get_mask(m).sum()) for _, m in ft_layers]
    final.update({"val_acc": accuracy(ft, splits, "val"), "test_acc": accuracy(ft, splits, "test"),
                  "flops": env.flops(kept_final), "flops_fraction": env.flops(kept_final) / env.dense_flops,
                  "kept": kept_final, "sparsity": sparsity_of(ft_layers)})
    if cfg.constraint == "weights":
        final["weights"] = float(sum(kept_final))
    final["budget_met"] = final[cfg.constraint] <= env.budget
    dense = {"val_acc": accuracy(model, splits, "val"), "test_acc": accuracy(model, splits, "test"),
             "flops": env.dense_flops}
    if fc_only:
        dense["cycles"] = est(model)
    cfg_d = asdict(cfg)
    result = {"method": "amc", "paper": "He et al., AMC, ECCV 2018", "config": cfg_d, "dataset": splits.name,
              "layers": env.names, "budget": env.budget, "budget_unit": cfg.constraint,
              "dense": dense, "best": {k: v for k, v in best.items()}, "final": final, "baselines": baselines,
              "agent": {"buffer": len(agent.buffer), "updates": agent.updates, "final_sigma": sigma,
                        "critic_loss_last": c_losses[-1] if c_losses else None,
                        "actor_loss_last": a_losses[-1] if a_losses else None, "baseline": agent.baseline},
              "episodes": episodes, "estimator_calls": est.calls if est else 0, "seconds": time.time() - t0}
    say(f"amc: best episode {best['episode']}: actions {[round(a, 3) for a in best['actions']]}, "
        f"val acc (no finetune) {best['val_acc']:.4f}; finetuned test acc {final['test_acc']:.4f}, "
        f"{cfg.constraint} {final[cfg.constraint]:.1f} <= {env.budget:.1f}: {final['budget_met']}")
    if out_dir is not None:
        write_result(result, out_dir, "amc", plot_amc)
    result["model"] = ft
    if keep_agent:
        result["agent_obj"], result["env"] = agent, env
    return result


def _reenforce_cycles(ft: nn.Module, env: AMCEnv, est: EIELatency) -> dict:
    """Finetuning moved the ReLU pattern and the cycles past the budget: remove a further
    share s of each layer's prunable surplus (kept - kept_min), s by bisection on the
    finetuned weights, the smallest measured s that meets the budget."""
    layers = dict(prunable_layers(ft))
    ws = [weight_of(layers[n]) for n in env.names]
    orders = [magnitude_order(w, get_mask(layers[n])) for w, n in zip(ws, env.names)]
    fc_in = est.fc_input(ft)

    def weights(s):
        out = []
        for t, w in enumerate(ws):
            alive = len(orders[t])
            k = alive - int(round(s * max(0, alive - env.kept_min[t])))
            f = w.clone().view(-1)
            f[torch.as_tensor(orders[t][:alive - k], dtype=torch.long)] = 0.0
            out.append(f.view_as(w))
        return out

    def cyc(s):
        return est.of_weights([w.numpy().astype(np.float64) for w in weights(s)], fc_in)

    if cyc(1.0) > env.budget:
        return {"repruned_after_finetune": True, "reprune_share": None, "cycles": cyc(0.0)}
    lo, hi = 0.0, 1.0
    for _ in range(12):
        mid = (lo + hi) / 2
        if cyc(mid) <= env.budget:
            hi = mid
        else:
            lo = mid
    for t, w in enumerate(weights(hi)):
        m = get_mask(layers[env.names[t]]).view(-1)
        alive = len(orders[t])
        drop = int(round(hi * max(0, alive - env.kept_min[t])))
        m[torch.as_tensor(orders[t][:drop], dtype=torch.long)] = 0.0
        set_mask(layers[env.names[t]], m.view_as(w))
    return {"repruned_after_finetune": True, "reprune_share": hi, "cycles": est(ft)}


def plot_amc(result: dict, path) -> None:
    """Search accuracy per episode; the best policy's per-layer pruning."""
    plt = pyplot()
    eps = result["episodes"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    x = [e["episode"] for e in eps]
    a1.scatter(x, [100 * e["val_acc"] for e in eps], s=6,
               c=["tab:gray" if e["warmup"] else "tab:blue" for e in eps])
    a1.axvline(result["config"]["warmup"] - 0.5, color="gray", ls=":")
    a1.set_xlabel("episode (gray: warm-up, random actions)")
    a1.set_ylabel("val accuracy without finetuning (%)")
    a1.set_title(f"AMC search, {result['budget_unit']} budget {result['budget']:.0f}")
    b = result["best"]
    a2.bar(range(len(b["actions"])), [100 * a for a in b["actions"]], color="tab:orange")
    a2.set_xticks(range(len(b["actions"])), result["layers"], rotation=30)
    a2.set_ylabel("pruned weights (%)")
    f = result["final"]
    a2.set_title(f"best policy: test acc {100 * f['test_acc']:.1f}% after finetuning")
    save_figure(fig, path)


# --------------------------------------------------------------------------- `eie prune amc`

def run(model, splits, ctx, seed, opts):
    """One seed (pruning/registry.py): the finetuned best policy and the result."""
    cfg = AMCConfig(constraint=opts.constraint, layers=ctx.layers, budget=opts.budget, reward=opts.reward,
                    episodes=opts.episodes, warmup=min(opts.warmup, opts.episodes), a_max=opts.a_max,
                    a_max_last=opts.a_max_last, reward_batches=opts.reward_batches, reward_lr=opts.reward_lr,
                    finetune_epochs=opts.finetune_epochs, lr=ctx.dense.lr, train_batch_size=ctx.dense.batch_size,
                    lr_schedule=ctx.dense.lr_schedule, optimizer=ctx.dense.optimizer,
                    weight_decay=ctx.dense.weight_decay, shift=ctx.dense.shift, n_pe=ctx.n_pe, acc_depth=ctx.acc_depth,
                    n_calibration=opts.latency_samples, val_samples=opts.val_samples,
                    baseline_policies=opts.baselines, seed=seed)
    res = run_amc(model, splits, cfg, log=progress_log(ctx))
    return res.pop("model"), {"amc": res}


def plots(report, out):
    return plot_per_seed(report, out, "amc", plot_amc)


def compare_note(settings) -> str:
    kept = 100 * (1 - settings.sparsity)
    reward = (f"reward after {settings.amc_reward_batches} finetuning batches" if settings.amc_reward_batches
              else "reward without finetuning")
    return (f"FLOPs budget {kept:g} % of dense on the FC layers (2 FLOPs per non-zero weight: at most {kept:g} % of "
            f"the weights kept; the search may keep fewer; with `layers=\"all\"` the budget is {kept:g} % of the "
            f"weights), {settings.amc_episodes} episodes ({settings.amc_warmup} warm-up), a_max {AMCConfig.a_max} "
            f"(output layer {settings.amc_a_max_last}), {reward}, best policy finetuned "
            f"{finetune_budget(settings)} epochs at lr x {settings.lr_scale:g}")


def compare(model, splits, ctx, seed, settings) -> nn.Module:
    """AMC in `eie prune compare`: a FLOPs budget of `1 - sparsity` on the FC layers, i.e.
    at most that fraction of the weights (see `compare_note`)."""
    cfg = AMCConfig(constraint="flops" if ctx.layers == "fc" else "weights", layers=ctx.layers,
                    budget=1 - settings.sparsity, episodes=settings.amc_episodes,
                    warmup=min(settings.amc_warmup, settings.amc_episodes), a_max_last=settings.amc_a_max_last,
                    reward_batches=settings.amc_reward_batches, finetune_epochs=finetune_budget(settings),
                    lr=ctx.dense.lr * settings.lr_scale, train_batch_size=ctx.dense.batch_size,
                    lr_schedule=ctx.dense.lr_schedule, optimizer=ctx.dense.optimizer,
                    weight_decay=ctx.dense.weight_decay, shift=ctx.dense.shift, n_pe=ctx.n_pe, acc_depth=ctx.acc_depth,
                    val_samples=settings.amc_val_samples, seed=seed)
    return run_amc(model, splits, cfg, log=progress_log(ctx))["model"]
