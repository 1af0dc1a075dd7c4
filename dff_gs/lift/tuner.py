"""The lift fine-tune as a trainer: features (and decoder) alone distilled for ``lift.steps`` steps, geometry and
colour frozen, run by the shared :func:`~dff_gs.train.loop.fit_loop` so that it checkpoints, stops on Ctrl-C /
SIGTERM and resumes exactly like training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from dff_gs.core.cameras import Cameras
from dff_gs.core.errors import CheckpointError, ConfigError
from dff_gs.core.features import resample_maps
from dff_gs.core.gaussians import GaussianModel
from dff_gs.render import rasterize
from dff_gs.train.checkpoint import load_checkpoint, save_checkpoint
from dff_gs.train.config import Config
from dff_gs.train.loop import TrainerBase
from dff_gs.train.losses import feature_loss
from dff_gs.train.trainer import view_for_step


class FeatureTuner(TrainerBase):
    """``cfg.lift.steps`` steps of the training's L1 feature loss, one view a step (views in seeded
    permutations), on ``model`` in place.

    cameras: Cameras  # V training cameras
    maps: Tensor  # [V, h, w, C] their teacher maps
    """

    def __init__(self, cfg: Config, model: GaussianModel, cameras: Cameras, maps: Tensor):
        if model.feature_dim == 0:
            raise ConfigError("lift fine-tune: the model carries no features")
        super().__init__(cfg, model, cfg.lift.steps)
        self.cameras = cameras.to(model.device)
        self.maps = maps
        self.optimizer = self._make_optimizer()
        self._frozen = self._geometry()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = [{"params": [self.model.params["features"]], "lr": self.cfg.optim.features_lr}]
        if self.model.decoder is not None:
            groups.append({"params": list(self.model.decoder.parameters()), "lr": self.cfg.optim.decoder_lr})
        return torch.optim.Adam(groups, eps=1e-15)

    def _geometry(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The frozen activated means, quats, scales, opacities (computed once)."""
        m = self.model
        with torch.no_grad():
            return m.get_means().detach(), m.get_quats().detach(), m.get_scales().detach(), m.get_opacities().detach()

    def train_step(self) -> dict:
        cams = self.cameras
        v = view_for_step(self.step, len(cams), self.cfg.train.seed)
        means, quats, scales, opacities = self._frozen
        img, _, _, _ = rasterize(means, quats, scales, opacities, self.model.params["features"][None],
                                 cams.viewmats[v:v + 1], cams.Ks[v:v + 1], cams.width, cams.height,
                                 render_depth=False, backend=self.cfg.train.backend,
                                 antialiased=self.model.antialiased)
        target = resample_maps(self.maps[v:v + 1].to(self.model.device).float(), cams.height, cams.width)
        loss = feature_loss(self.model.decode(img), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach())}

    desc = "lift fine-tune"

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """The whole lifted model (the lift pass is not redone on resume), the optimizer, the step and the log."""
        return {"kind": "lift", "step": self.step, "train_seconds": self.train_seconds,
                "model": self.model.state_dict(), "antialiased": self.model.antialiased,
                "optimizer": self.optimizer.state_dict(), "history": self.history}

    def save(self, path: str | Path, config: dict, extra: Optional[dict] = None) -> Path:
        """A checkpoint of :meth:`state`; ``extra`` (the lift's seconds and info) rides along."""
        return save_checkpoint(path, dict(self.state(), config=config, extra=extra or {}))

    def load(self, path: str | Path) -> None:
        """Continue from :meth:`save`'s checkpoint: its model's state into this tuner's model, then
        :meth:`restore`."""
        model, payload = self.load_model(path, self.model.device)
        with torch.no_grad():
            self.model.load_state_dict(model.state_dict())
        self.model.antialiased = model.antialiased
        self._frozen = self._geometry()
        self.restore(payload, path)

    @staticmethod
    def load_model(path: str | Path, device: torch.device) -> tuple[GaussianModel, dict]:
        """The lifted model and the checkpoint's payload of a lift fine-tune checkpoint."""
        payload = load_checkpoint(path, map_location=device)
        if payload.get("kind") != "lift":
            raise CheckpointError(f"{path}: not a lift fine-tune checkpoint (resume it without --lift)")
        try:
            model = GaussianModel.from_state_dict(payload["model"]).to(device)
            model.antialiased = bool(payload.get("antialiased", False))  # as fine-tuned (before the option: classic)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: the checkpoint's model does not load ({e})") from None
        model.check_finite(str(path))
        return model, payload

    def restore(self, payload: dict, path: str | Path) -> None:
        """Continue from a payload :meth:`load_model` read (the model already is the checkpoint's)."""
        try:
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(payload["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: checkpoint does not match this model/config ({e})") from None
        self.restore_progress(payload, payload["rng"])


def finetune_features(model: GaussianModel, cameras: Cameras, maps: Tensor, *, steps: int, lr: float = 1e-2,
                      decoder_lr: float = 1e-3, backend: str = "auto", seed: int = 0,
                      progress: bool = False) -> dict:
    """:class:`FeatureTuner` with these settings, run to ``steps`` on ``model`` in place (no checkpoints).

    maps: Tensor  # [V, h, w, C] teacher maps of ``cameras``
    returns {"seconds", "history": [{"step", "loss"}, ...]}
    """
    cfg = Config()
    cfg.lift.steps, cfg.optim.features_lr, cfg.optim.decoder_lr = steps, lr, decoder_lr
    cfg.train.backend, cfg.train.seed, cfg.train.checkpoint_every, cfg.train.checkpoint_minutes = backend, seed, 0, 0
    tuner = FeatureTuner(cfg, model, cameras, maps)
    tuner.fit(progress=progress)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return {"seconds": tuner.train_seconds,
            "history": [{"step": h["step"], "loss": h["loss"]} for h in tuner.history]}
