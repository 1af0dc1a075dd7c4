"""The ``dino`` teacher: patch tokens of a timm DINO ViT (self-supervised; no text encoder).

Features: the patch tokens after the last block and the final norm (``forward_features`` without the
class / register tokens), L2-normalised per patch. The image is resized so its short side is
``input_size`` (default 224) with both sides multiples of the patch size, keeping the aspect; the ViT is
built with ``dynamic_img_size`` so its positional embeddings are interpolated to that grid. The map is
``[H' / patch, W' / patch, C]`` (C = 384 for ViT-S/16).

Weights: ``model`` is a timm name with its pretrained tag (default ``vit_small_patch16_224.dino``);
``weights`` a local checkpoint file (loaded through timm, so its key filtering applies), else the
Hugging Face hub cache. ``random_weights=True`` builds a fixed-seed random init (tests only).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.teachers.base import Teacher, hub_error, normalize, register_teacher, weights_error
from dff_gs.teachers.images import check_image, fit_short_side, image_to_batch

DEFAULT_MODEL = "vit_small_patch16_224.dino"
HOW = ("pass teacher.weights=/path/to/model.safetensors (a timm or original DINO checkpoint of the model, "
       "e.g. dino_deitsmall16_pretrain.pth)")


class DinoTeacher(Teacher):
    """timm DINO ViT patch features (see the module docstring)."""

    name = "dino"
    supports_patch = True

    def __init__(self, model: str = DEFAULT_MODEL, weights: str = "", random_weights: bool = False,
                 input_size: int = 224, device: str = ""):
        self.model_name = model or DEFAULT_MODEL
        self.random_weights = bool(random_weights)
        self.input_size = int(input_size)
        if self.input_size < 16:
            raise ConfigError(f"dino teacher: input_size={input_size} (need >= 16)")
        self.weights = ""
        if weights and not self.random_weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ConfigError(weights_error("dino", [str(path)], HOW))
            self.weights = str(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model = None

    def settings(self) -> dict:
        source = "random" if self.random_weights else (self.weights or "hub")
        return {"model": self.model_name, "weights": source, "input_size": self.input_size}

    @property
    def model(self):
        """The timm ViT (built on first use)."""
        if self._model is None:
            self._model = self._build().to(self.device).eval()
        return self._model

    def _build(self):
        import timm

        arch = self.model_name.split(".")[0]
        if not timm.is_model(arch):
            raise ConfigError(f"dino teacher: unknown timm model {self.model_name!r} "
                              f"(e.g. {DEFAULT_MODEL}, vit_base_patch16_224.dino)")
        kwargs = dict(num_classes=0, dynamic_img_size=True)
        if self.random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return timm.create_model(self.model_name, pretrained=False, **kwargs)
        if self.weights:
            try:
                return timm.create_model(self.model_name, pretrained=True,
                                         pretrained_cfg_overlay=dict(file=self.weights), **kwargs)
            except Exception as err:  # noqa: BLE001  a bad file: say which and why
                raise ConfigError(f"dino teacher: cannot load {self.weights} into {self.model_name}: {err}") from None
        try:
            return timm.create_model(self.model_name, pretrained=True, **kwargs)
        except Exception as err:  # noqa: BLE001  offline hub, unknown tag, ...: say where we looked
            raise hub_error("dino", f"timm/{self.model_name}", HOW, err) from None

    @property
    def dim(self) -> int:
        return int(self.model.num_features)

    @property
    def patch(self) -> int:
        size = self.model.patch_embed.patch_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size of the map ``features`` returns for an ``height x width`` image."""
        h, w = fit_short_side(height, width, self.input_size, multiple=self.patch)
        return h // self.patch, w // self.patch

    @torch.no_grad()
    def features(self, image: Tensor) -> Tensor:
        """image: Tensor  # [H, W, 3] in [0, 1]  ->  feats: Tensor  # [H'/patch, W'/patch, C] unit norm"""
        H, W = check_image(image, "dino")
        model = self.model
        gh, gw = self.grid_hw(H, W)
        cfg = model.pretrained_cfg
        batch = image_to_batch(image, (gh * self.patch, gw * self.patch), cfg["mean"], cfg["std"], self.device)
        tokens = model.forward_features(batch)[:, model.num_prefix_tokens:]  # [1, gh * gw, C]
        return normalize(tokens[0].reshape(gh, gw, -1))


register_teacher("dino", DinoTeacher)
