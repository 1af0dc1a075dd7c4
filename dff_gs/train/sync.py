"""What the ranks of a torchrun training exchange every step, so that their Gaussians stay identical: the gradients
of every parameter (one all-reduce) and the densification statistics (a second one, before the strategy decides).

The convention that makes N ranks equal one process: a step's loss is the mean over its ``B = train.batch_views``
views of each view's loss. Each rank weights its ``B / N`` views by ``1 / B``, so the *sum* of the ranks' gradients
is the gradient of that mean, the one a single process rendering all B views computes.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.distributed import PeerLost, World


def sum_gradients(world: World, tensors: list[Tensor], extra: Tensor) -> Tensor:
    """Sum every tensor's ``.grad`` over the ranks in place, and ``extra`` with them, in one all-reduce.

    A ``.grad`` that is None (the parameter took no part in this step's loss: the same on every rank, the graph
    being the same) travels as zeros and stays None, so Adam skips it as a single process would.
    tensors: leaf tensors of any shape; extra: Tensor  # [K] float values to sum too (losses for the log)
    Returns Tensor  # [K] ``extra`` summed over the ranks.
    A failure is a :class:`PeerLost` with ``state_intact`` (nothing of the step has been applied yet).
    """
    parts = [t.grad.reshape(-1) if t.grad is not None else t.new_zeros(t.numel()) for t in tensors]
    flat = torch.cat(parts + [extra.to(device=parts[0].device, dtype=parts[0].dtype).reshape(-1)])
    try:
        world.sum_(flat, "summing the gradients")
    except PeerLost as e:
        e.state_intact = True
        raise
    offset = 0
    for t in tensors:
        n = t.numel()
        if t.grad is not None:
            t.grad.copy_(flat[offset:offset + n].view(t.grad.shape))
        offset += n
    return flat[offset:]


def shared_stats_strategy(world: World, **kwargs):
    """gsplat's ``DefaultStrategy(**kwargs)`` whose per-step densification statistics (image-plane gradient norms,
    visibility counts and, when the strategy keeps them, 2D radii) are those of all the step's views: each rank
    accumulates its own views with the strategy's own bookkeeping into a scratch state (the ``info`` of a batched
    render, or ``{"parts": [info, ...]}`` of views rendered one at a time), the scratch states are summed (radii:
    maximum) over the ranks, and the result is added to the state the strategy grows and prunes from. Every rank
    then takes the same decision on the same numbers. Used for several views a step on one process too, so that
    its statistics are formed the same way."""
    from gsplat.strategy import DefaultStrategy

    class SharedStatsStrategy(DefaultStrategy):
        def _update_state(self, params, state, info, packed: bool = False):
            scratch: dict = {"grad2d": None, "count": None, "scene_scale": state["scene_scale"]}
            if "radii" in state:
                scratch["radii"] = None
            for part in info.get("parts", [info]):  # views rendered one at a time: each one's info in turn
                super()._update_state(params, scratch, part, packed=packed)
            sums = torch.stack([scratch["grad2d"], scratch["count"]])  # [2, N]
            try:
                world.sum_(sums, "summing the densification statistics")
                if "radii" in state:
                    world.max_(scratch["radii"], "the densification radii")
            except PeerLost as e:
                e.state_intact = True  # the strategy has changed nothing yet this step
                raise
            for i, key in enumerate(("grad2d", "count")):
                state[key] = sums[i] if state[key] is None else state[key] + sums[i]
            if "radii" in state:
                state["radii"] = _maximum(state["radii"], scratch["radii"])

    return SharedStatsStrategy(**kwargs)


def _maximum(a: Optional[Tensor], b: Tensor) -> Tensor:
    return b if a is None else torch.maximum(a, b)
