"""The Gaussian trainer: photometric + distillation losses, densification, checkpoints.

The trainer owns the optimisation loop only. Data, teacher maps and the model come in ready;
evaluation and run-folder writing live in :mod:`dff_gs.engine.evaluate` and :mod:`dff_gs.engine.pipeline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from dff_gs.backbone import as_backbone
from dff_gs.core.cameras import Cameras
from dff_gs.core.distributed import World
from dff_gs.core.errors import CheckpointError
from dff_gs.core.features import resample_maps
from dff_gs.core.gaussians import GaussianModel
from dff_gs.core.utils import as_rgb
from dff_gs.render import render
from dff_gs.train.checkpoint import load_checkpoint, save_checkpoint
from dff_gs.train.config import Config
from dff_gs.train.loop import TrainerBase
from dff_gs.train.losses import feature_grid, feature_loss, photometric_loss, pool_features
from dff_gs.train.preview import logged_preview
from dff_gs.train.sync import shared_stats_strategy, sum_gradients

PARAM_LR_KEYS = {
    "means": "means_lr",
    "quats": "quats_lr",
    "scales": "scales_lr",
    "opacities": "opacities_lr",
    "sh0": "sh0_lr",
    "shN": "shN_lr",
    "features": "features_lr",
}



def view_for_step(step: int, num_views: int, seed: int) -> int:
    """The training view of ``step``: views are visited in a fresh seeded permutation each epoch, so a resumed
    run continues exactly without extra state."""
    epoch, i = divmod(step, num_views)
    return int(torch.randperm(num_views, generator=torch.Generator().manual_seed(seed * 100003 + epoch))[i])


def views_for_step(step: int, num_views: int, seed: int, batch: int = 1) -> list[int]:
    """The ``batch`` training views of ``step``: the next ``batch`` entries of :func:`view_for_step`'s sequence
    (entries ``step * batch`` to ``step * batch + batch - 1``), so one view a step is that sequence itself and a
    batch crosses into the next epoch's permutation when it must."""
    return [view_for_step(step * batch + j, num_views, seed) for j in range(batch)]

@dataclass
class TrainData:
    """What the trainer fits, on the training device.

    images: Tensor  # [V, H, W, 3] training images, uint8 (or float in [0, 1]): as_rgb per step
    cameras: Cameras  # V training cameras
    teacher_maps: Optional[Tensor]  # [V, h, w, C] teacher features at the teacher's resolution
    background: Tensor  # [3]
    scene_scale: float  # size of the scene, for learning rates and densification (:func:`scene_scale_of`)
    masks: Optional[Tensor] = None  # [V, H, W] bool, False = pixel left out of the photometric loss
    alphas: Optional[Tensor] = None  # [V, H, W] alpha of RGBA views, for train.random_background (else None)
    """

    images: Tensor
    cameras: Cameras
    teacher_maps: Optional[Tensor]
    background: Tensor
    scene_scale: float
    masks: Optional[Tensor] = None
    alphas: Optional[Tensor] = None


def step_backgrounds(data: TrainData, vids: list[int], step: int, seed: int) -> tuple[Tensor, Tensor]:
    """The backgrounds a step renders ``vids`` over and their targets: the scene's background and the views as
    loaded, or with ``data.alphas`` (RGBA views, ``train.random_background``) a random colour per view, drawn from
    ``(seed, step, view)`` alone (the same whatever the ranks or the batching), and the views composited on it
    instead (a view is ``rgb * a + background * (1 - a)``, 8 bits a channel).

    Returns (backgrounds: Tensor  # [b, 3], targets: Tensor  # [b, H, W, 3] float in [0, 1])"""
    gt = as_rgb(data.images[vids])  # uint8 kept on the device, float per step
    if data.alphas is None:
        return data.background[None].expand(len(vids), 3), gt
    bg = torch.stack([torch.rand(3, generator=torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + v))
                      for v in vids]).to(gt.device)
    clear = (1.0 - data.alphas[vids].float())[..., None]
    return bg, (gt + (bg[:, None, None, :] - data.background) * clear).clamp(0, 1)


def scene_scale_of(scene) -> float:
    """The scene's size for learning rates and densification: 1.1 x the largest distance of a camera centre from
    their mean (the 3DGS convention) when depth maps or points place the content; without them, 1.1 x the
    half-diagonal of the region the cameras look at (``scene.bounds``), where the Gaussians start (an object
    seen from afar is much smaller than the camera rig)."""
    if scene.depths is None and scene.points is None:
        b = scene.bounds
        return 1.1 * float(0.5 * (b[1] - b[0]).norm().clamp_min(1e-3))
    centers = scene.cameras.centers
    return 1.1 * float((centers - centers.mean(0)).norm(dim=-1).max().clamp_min(1e-3))


class Trainer(TrainerBase):
    """Optimises a :class:`GaussianModel` against images and (optionally) teacher feature maps."""

    def __init__(self, cfg: Config, model: GaussianModel, data: TrainData, device: torch.device,
                 world: Optional[World] = None):
        super().__init__(cfg, model.to(device), cfg.train.steps)
        self.world = world or World()  # the ranks of a torchrun training (one process: rank 0 of 1)
        self.batch_views = cfg.train.batch_views
        self.data = data
        self.device = device
        self.use_features = data.teacher_maps is not None and model.feature_dim > 0
        self.optimizers = self._make_optimizers()
        self.decoder_opt = self._make_decoder_optimizer()
        self.strategy, self.strategy_state = self._make_strategy()
        self.feature_side = self._feature_side()

    # ------------------------------------------------------------------ setup
    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per parameter (gsplat's strategies edit them per key), fused: one kernel per parameter instead
        of a dozen tensor ops (2.6 vs 6.5 ms a step for the room's seven on 2 CPU cores)."""
        o = self.cfg.optim
        opts = {}
        for key, p in self.model.params.items():
            lr = getattr(o, PARAM_LR_KEYS[key])
            if key == "means":
                lr *= self.data.scene_scale
            opts[key] = torch.optim.Adam([{"params": [p], "lr": lr, "name": key}], eps=1e-15, fused=True)
        return opts

    def _make_decoder_optimizer(self) -> Optional[torch.optim.Optimizer]:
        decoder = self.model.decoder
        return torch.optim.Adam(decoder.parameters(), lr=self.cfg.optim.decoder_lr, fused=True) if decoder else None

    def _make_strategy(self):
        s = self.cfg.strategy
        if not s.enabled:
            return None, {}
        from gsplat.strategy import DefaultStrategy  # pure PyTorch; works with our torch backend's info

        steps = self.cfg.train.steps
        one = self.world.size == 1 and self.batch_views == 1  # gsplat's own strategy, as it always was
        make = DefaultStrategy if one else partial(shared_stats_strategy, self.world)
        strategy = make(
            prune_opa=s.prune_opa,
            grow_grad2d=s.grow_grad2d,
            grow_scale3d=s.grow_scale3d,
            refine_start_iter=s.refine_start,
            refine_stop_iter=int(s.refine_stop_frac * steps),
            refine_every=s.refine_every,
            reset_every=s.reset_every,
            verbose=False,
        )
        strategy.check_sanity(self.model.params, self.optimizers)
        return strategy, strategy.initialize_state(scene_scale=self.data.scene_scale)

    def _feature_side(self) -> int:
        """Longer side of the distillation loss's grid: ``train.feature_max_side``, and with
        ``train.feature_teacher_grid`` at most the teacher maps' own longer side (0 = the render's size)."""
        side = self.cfg.train.feature_max_side
        if self.cfg.train.feature_teacher_grid and self.data.teacher_maps is not None:
            teacher_side = max(self.data.teacher_maps.shape[1:3])
            side = teacher_side if side <= 0 else min(side, teacher_side)
        return side

    def _means_lr(self, step: int) -> float:
        """Exponential decay of the means learning rate to ``means_lr_final`` of its start."""
        o = self.cfg.optim
        t = min(step / max(self.cfg.train.steps, 1), 1.0)
        return o.means_lr * self.data.scene_scale * math.exp(t * math.log(o.means_lr_final))

    # ------------------------------------------------------------------ loop
    def train_step(self) -> dict:
        """One optimisation step on ``train.batch_views`` views (this rank's share of them under torchrun): rendered
        in one batch, or one at a time with their gradients accumulated (``train.batch_render``)."""
        cfg = self.cfg.train
        step = self.step
        vids = self.world.share(views_for_step(step, len(self.data.cameras), cfg.seed, self.batch_views))
        active_sh = min(step // max(cfg.sh_degree_interval, 1), self.model.sh_degree)
        feat_on = self.use_features and step >= cfg.feature_start
        groups = [vids] if cfg.batch_render else [[v] for v in vids]
        logged, infos = None, []
        for group in groups:
            backgrounds, gt = step_backgrounds(self.data, group, step, cfg.seed)  # gt: [b, H, W, 3]
            out = render(
                self.model,
                self.data.cameras[group],
                backgrounds=backgrounds,
                with_features=feat_on,
                backend=cfg.backend,
                sh_degree=active_sh,
                render_depth=False,  # no loss reads it: one channel less to composite
            )
            out.info["n_cameras"] = self.batch_views  # densification scales image-plane gradients to one view's
            if self.strategy is not None:
                self.strategy.step_pre_backward(self.model.params, self.optimizers, self.strategy_state, step,
                                                out.info)
            loss, loss_rgb, loss_feat = self._loss(out, group, gt, feat_on)
            loss.backward()  # gradients of several groups add up in .grad, view after view
            with torch.no_grad():
                mse = ((out.rgb.detach().clamp(0, 1) - gt) ** 2).mean() * (len(group) / self.batch_views)
            values = torch.stack([loss.detach(), loss_rgb.detach(), loss_feat.detach().to(loss.device), mse])
            logged = values if logged is None else logged + values
            infos.append(out.info)
        if self.world.size > 1:  # every rank's gradients and log values summed: the mean over the step's views
            logged = sum_gradients(self.world, self._trained_tensors(), logged)
        self._apply(step, infos[0] if len(infos) == 1 else {"parts": infos})
        self.step += 1
        loss_v, rgb_v, feat_v, mse_v = (float(v) for v in logged)
        return {
            "loss": loss_v,
            "loss_rgb": rgb_v,
            "loss_feat": feat_v,
            "psnr": -10 * math.log10(max(mse_v, 1e-10)),
            "num_gaussians": self.model.num_gaussians,
        }

    def _loss(self, out, vids: list[int], gt: Tensor, feat_on: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, photometric part, distillation part) of this rank's views: each view's loss as a one-view step
        computes it, summed with weight ``1 / train.batch_views`` (the sum over ranks is the mean over the step's
        views; :mod:`dff_gs.train.sync`).  gt: Tensor  # [b, H, W, 3]"""
        cfg = self.cfg.train
        rgb = out.rgb
        if self.data.masks is not None:  # masked-out pixels match the target: no loss, no gradient
            keep = self.data.masks[vids][..., None]
            rgb = torch.where(keep, rgb, gt)
        rgb_terms = [photometric_loss(rgb[i:i + 1], gt[i:i + 1], cfg.ssim_lambda) for i in range(len(vids))]
        loss_rgb = self._batch_mean(rgb_terms)
        loss = loss_rgb
        loss_feat = torch.zeros(())
        if feat_on:
            cams = self.data.cameras
            h, w = feature_grid(cams.height, cams.width, self.feature_side)
            target = resample_maps(self.data.teacher_maps[vids].to(self.device), h, w)
            pred = self.model.decode(pool_features(out.features, h, w))
            loss_feat = self._batch_mean([feature_loss(pred[i:i + 1], target[i:i + 1]) for i in range(len(vids))])
            loss = loss + cfg.feature_lambda * loss_feat
        return loss, loss_rgb, loss_feat

    def _batch_mean(self, terms: list[Tensor]) -> Tensor:
        """``sum(terms) / train.batch_views`` (one view a step: the term itself)."""
        if self.batch_views == 1:
            return terms[0]
        return torch.stack(terms).sum() / self.batch_views

    def _trained_tensors(self) -> list[Tensor]:
        """Every tensor an optimizer steps: the Gaussians' parameters, then the decoder's."""
        decoder = list(self.model.decoder.parameters()) if self.model.decoder is not None else []
        return list(self.model.params.values()) + decoder

    def _apply(self, step: int, info: dict) -> None:
        """Densify (gsplat's strategy) and take the optimizer steps, the gradients of the step in place."""
        if self.strategy is not None:
            self.strategy.step_post_backward(
                self.model.params, self.optimizers, self.strategy_state, step, info, packed=False
            )
            self._cap_gaussians()
            if self.world.size > 1 and step % self.strategy.refine_every == 0:
                self.world.same_everywhere([self.model.num_gaussians], "number of Gaussians")
        for g in self.optimizers["means"].param_groups:
            g["lr"] = self._means_lr(step)
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.decoder_opt is not None:
            self.decoder_opt.step()
            self.decoder_opt.zero_grad(set_to_none=True)

    def _cap_gaussians(self) -> None:
        """Stop growth past ``max_gaussians`` by raising the growth threshold (never drops Gaussians)."""
        if self.model.num_gaussians > self.cfg.strategy.max_gaussians:
            self.strategy.grow_grad2d = float("inf")

    def preview(self) -> Tensor:
        """Render | ground truth | feature PCA of training view 0 (``train.image_every``).  Tensor  # [H, kW, 3]"""
        backbone = as_backbone(self.model, backend=self.cfg.train.backend, background=self.data.background)
        return logged_preview(self, backbone, self.data.cameras[[0]], as_rgb(self.data.images[0]))

    def postfix(self, stats: dict) -> dict:
        return dict(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", n=stats["num_gaussians"])

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "sh_degree": self.model.sh_degree,
            "antialiased": self.model.antialiased,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "decoder_opt": self.decoder_opt.state_dict() if self.decoder_opt is not None else None,
            "strategy_state": self.strategy_state,
            "strategy_grow_grad2d": self.strategy.grow_grad2d if self.strategy is not None else None,
            "history": self.history,
            "eval_history": self.eval_history,
        }

    def save(self, path: str | Path, config: dict) -> Path:
        return save_checkpoint(path, dict(self.state(), config=config))

    def load(self, path: str | Path) -> None:
        """Restore everything saved by :meth:`save` so training continues bit-for-bit."""
        payload = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(payload["model"])
            self.model.check_finite(str(path))
            self.model.antialiased = bool(payload.get("antialiased", False))  # as trained (before the option: classic)
            self.optimizers = self._make_optimizers()
            for k, o in self.optimizers.items():
                o.load_state_dict(payload["optimizers"][k])
            self.decoder_opt = self._make_decoder_optimizer()  # the loaded model has a new decoder module
            if (self.decoder_opt is None) != (payload.get("decoder_opt") is None):
                raise CheckpointError(f"{path}: the checkpoint's decoder does not match this model/config")
            if self.decoder_opt is not None:
                self.decoder_opt.load_state_dict(payload["decoder_opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path}: checkpoint does not match this model/config ({e})") from None
        if self.strategy is not None:
            self.strategy_state = {
                k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in payload["strategy_state"].items()
            }
            if payload.get("strategy_grow_grad2d") is not None:
                self.strategy.grow_grad2d = payload["strategy_grow_grad2d"]
        self.restore_progress(payload, payload["rng"])
