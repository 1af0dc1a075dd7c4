"""The NeRF trainer: the Gaussians' photometric + distillation losses on patches of rays, Adam with a cosine
schedule, occupancy-grid refreshes, periodic held-out evaluation (its time excluded from the training
clock), checkpoints and exact resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import CheckpointError, ConfigError
from dff_gs.core.utils import as_rgb
from dff_gs.nerf.batches import PatchSampler
from dff_gs.nerf.io import check_finite, load_nerf_checkpoint, save_nerf_checkpoint
from dff_gs.nerf.model import NerfModel
from dff_gs.nerf.renderer import distortion_loss
from dff_gs.train.config import Config
from dff_gs.train.loop import TrainerBase
from dff_gs.train.losses import feature_loss, photometric_loss
from dff_gs.train.preview import logged_preview

SSIM_MIN_PATCH = 11 // 2 + 1
"""Smallest patch side the D-SSIM term takes (``ssim_map``'s 11-pixel window, reflection-padded by 5)."""


class NerfTrainer(TrainerBase):
    """Optimises a :class:`NerfModel` on training images and (optionally) teacher maps.

    images: Tensor  # [V, H, W, 3] uint8 (or float in [0, 1]) on the training device
    cameras: Cameras  # V cameras on the training device
    teacher_maps: Tensor  # [V, h, w, C] or None
    """

    def __init__(self, cfg: Config, model: NerfModel, images: Tensor, cameras: Cameras,
                 teacher_maps: Optional[Tensor], device: torch.device):
        super().__init__(cfg, model.to(device), cfg.train.steps)
        self.ncfg = cfg.nerf
        self.device = device
        self.use_features = teacher_maps is not None and model.has_features
        if cfg.train.ssim_lambda > 0 and self.ncfg.patch_size < SSIM_MIN_PATCH:
            raise ConfigError(f"nerf.patch_size={self.ncfg.patch_size}: the D-SSIM term (train.ssim_lambda="
                              f"{cfg.train.ssim_lambda}) needs patches of at least {SSIM_MIN_PATCH}x{SSIM_MIN_PATCH} "
                              "pixels; use a larger patch or train.ssim_lambda=0")
        self.sampler = PatchSampler(images, cameras, teacher_maps if self.use_features else None,
                                    self.ncfg.batch_rays, self.ncfg.patch_size)
        self.optimizer = self._make_optimizer()
        self._preview_view = (cameras[[0]], as_rgb(images[0]))  # what train.image_every logs

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        n = self.ncfg
        grids, mlps = [], []
        for name, p in self.model.field.named_parameters():
            (grids if name.endswith("table") else mlps).append(p)
        groups = [{"params": grids, "lr": n.lr, "weight_decay": 0.0, "name": "grids"},
                  {"params": mlps, "lr": n.lr, "weight_decay": n.weight_decay, "name": "mlps"}]
        if self.model.decoder is not None:
            groups.append({"params": list(self.model.decoder.parameters()), "lr": n.decoder_lr, "weight_decay": 0.0,
                           "name": "decoder"})
        for g in groups:
            g["base_lr"] = g["lr"]
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``lr_final`` of the initial rate."""
        n, total = self.ncfg, max(self.cfg.train.steps, 1)
        if n.lr_warmup and step < n.lr_warmup:
            return (step + 1) / n.lr_warmup
        t = min(max(step - n.lr_warmup, 0) / max(total - n.lr_warmup, 1), 1.0)
        return n.lr_final + (1 - n.lr_final) * 0.5 * (1 + math.cos(math.pi * t))

    # ------------------------------------------------------------------ loop
    def train_step(self) -> dict:
        cfg, n = self.cfg.train, self.ncfg
        step = self.step
        if n.occ_update_every and step % n.occ_update_every == 0:
            self.model.update_occupancy(warmup=step < n.occ_warmup)
        f = self.lr_factor(step)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * (f if g["name"] != "decoder" else 1.0)
        batch = self.sampler.sample()
        feat_on = self.use_features and step >= cfg.feature_start
        out = self.model.render_rays(batch.rays_o, batch.rays_d, with_features=feat_on, jitter=True)
        P, s = batch.rgb.shape[:2]
        pred = out.rgb.reshape(P, s, s, 3)
        loss_rgb = photometric_loss(pred, batch.rgb, cfg.ssim_lambda)
        loss = loss_rgb
        loss_feat = torch.zeros(())
        if feat_on:
            loss_feat = feature_loss(self.model.decode(out.features).reshape(P, s, s, -1), batch.teacher)
            loss = loss + cfg.feature_lambda * loss_feat
        if n.distortion_lambda > 0:
            loss = loss + n.distortion_lambda * distortion_loss(out.weights, out.edges, out.t_near, out.t_far)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            mse = float(((pred.detach().clamp(0, 1) - batch.rgb) ** 2).mean())
        return {
            "loss": float(loss.detach()),
            "loss_rgb": float(loss_rgb.detach()),
            "loss_feat": float(loss_feat.detach()),
            "psnr": -10 * math.log10(max(mse, 1e-10)),
            "occupied": self.model.occupancy.occupied_fraction,
            **(out.stats or {}),
        }

    def preview(self) -> Tensor:
        """Render | ground truth | feature PCA of training view 0 (``train.image_every``).  Tensor  # [H, kW, 3]"""
        return logged_preview(self, self.model, self._preview_view[0], self._preview_view[1])

    desc = "train nerf"

    def postfix(self, stats: dict) -> dict:
        return dict(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", occ=f"{stats['occupied']:.2f}")

    def fit(self, on_checkpoint: Optional[Callable[[], Path]] = None, progress: bool = True,
            eval_fn: Optional[Callable[[], dict]] = None) -> None:
        """:meth:`TrainerBase.fit` with the model in training mode."""
        self.model.train()
        super().fit(on_checkpoint, progress, eval_fn)

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"step": self.step, "train_seconds": self.train_seconds, "optimizer": self.optimizer.state_dict(),
                "history": self.history, "eval_history": self.eval_history}

    def save(self, path: str | Path, config: dict, metadata: Optional[dict] = None) -> Path:
        return save_nerf_checkpoint(path, self.model, self.state(), config, metadata)

    def load(self, path: str | Path) -> None:
        """Restore everything :meth:`save` wrote so training continues exactly."""
        payload = load_nerf_checkpoint(path)
        try:
            self.model.load_state_dict(payload["model"]["state"])
            self.model.to(self.device)
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(payload["trainer"]["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: NeRF checkpoint does not match this model/config ({e})") from None
        check_finite(self.model, str(path))
        self.restore_progress(payload["trainer"], payload["rng"])
