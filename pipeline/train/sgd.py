"""SGD with momentum, Nesterov and weight decay: ``torch.optim.SGD``'s update, without torch.optim.

Why not ``torch.optim.SGD``: constructing any torch optimizer imports ``torch._dynamo``
(its methods are wrapped to disable compilation), about 1.2 s of every stage process's
start-up on a 2-core CPU, longer than a quick-profile run trains. The update below is
the same sequence of tensor operations as torch's (``dampening = 0``, no ``maximize``),
so results are bit-identical (``tests/unit/test_engine.py`` checks it against torch.optim.SGD),
and ``state_dict`` has torch's layout, so checkpoints load either way. ``GradScaler``
works with it (it needs ``param_groups`` and ``step``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class SGD:
    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.param_groups: list[dict[str, Any]] = [{
            "params": list(params), "lr": lr, "momentum": momentum, "dampening": 0,
            "weight_decay": weight_decay, "nesterov": nesterov, "maximize": False,
            "foreach": None, "differentiable": False, "fused": None}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self.foreach: bool | None = None  # None: the multi-tensor path on CUDA, as torch does

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if self.foreach if self.foreach is not None else all(p.is_cuda for p in params):
                self._step_foreach(group, params)  # torch's default on CUDA: fewer kernels
            else:
                self._step_single(group, params)  # torch's default on CPU

    def _step_single(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        for p in params:
            grad = p.grad if decay == 0 else p.grad.add(p, alpha=decay)
            if momentum != 0:
                buf = self.state.get(p, {}).get("momentum_buffer")
                if buf is None:
                    buf = grad.detach().clone()
                    self.state[p] = {"momentum_buffer": buf}
                else:
                    buf.mul_(momentum).add_(grad, alpha=1)
                grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(grad, alpha=-lr)

    def _step_foreach(self, group: dict[str, Any], params: list[Tensor]) -> None:
        if not params:
            return
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        if decay != 0:
            grads = torch._foreach_add(grads, params, alpha=decay)
        if momentum != 0:
            bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
            if any(b is None for b in bufs):  # first step (for some): start from the gradient
                for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                    if bufs[i] is None:
                        bufs[i] = g.detach().clone()
                        self.state[p] = {"momentum_buffer": bufs[i]}
                    else:
                        bufs[i].mul_(momentum).add_(g, alpha=1)
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1)
            if group["nesterov"]:
                grads = torch._foreach_add(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        torch._foreach_add_(params, grads, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: parameters by index, per-parameter state by that index."""
        params = self.param_groups[0]["params"]
        index = {id(p): i for i, p in enumerate(params)}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        state = {index[id(p)]: {k: v.clone() for k, v in s.items()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        params = self.param_groups[0]["params"]
        for group, saved_group in zip(self.param_groups, saved["param_groups"], strict=True):
            group.update({k: v for k, v in saved_group.items() if k != "params"})
        self.state = {params[int(i)]: {k: v.to(params[int(i)].device) for k, v in s.items()}
                      for i, s in saved["state"].items()}
