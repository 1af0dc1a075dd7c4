"""LPIPS as nerfstudio and gsplat report it (torchmetrics' network, inputs in [0, 1]), only from weights on disk.

``train.lpips_weights`` names a torchvision ImageNet checkpoint of the backbone: AlexNet (``alexnet-owt-*.pth``,
the usual LPIPS) or VGG16 (``vgg16-*.pth``), a plain state dict with ``features.N.weight`` keys. Which one it is
comes from the first convolution (11x11: AlexNet, 3x3: VGG16). The linear layers on top are the LPIPS ones that
torchmetrics ships in its package. Nothing is downloaded: without a weights file LPIPS is reported as
``LPIPS_UNAVAILABLE``, never estimated.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError

LPIPS_UNAVAILABLE = "unavailable (no weights)"
KEY = "train.lpips_weights"
_NETS = {11: ("alex", "alexnet"), 3: ("vgg", "vgg16")}  # first conv kernel size -> (LPIPS name, torchvision name)


def _read_backbone(path: Path) -> tuple[str, dict]:
    """The LPIPS network name and the torchvision state dict in ``path`` (one ConfigError line if it is not one)."""
    if not path.is_file():
        raise ConfigError(f"{KEY}={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line problem
        raise ConfigError(f"{KEY}={path}: not a torch checkpoint ({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    first = state.get("features.0.weight") if isinstance(state, dict) else None
    if not isinstance(first, Tensor) or first.dim() != 4 or first.shape[-1] not in _NETS:
        raise ConfigError(f"{KEY}={path}: expected a torchvision AlexNet or VGG16 state dict "
                          "(features.0.weight of an 11x11 or 3x3 convolution)")
    return _NETS[first.shape[-1]][0], state


@lru_cache(maxsize=2)
def load_lpips(path: str) -> torch.nn.Module:
    """torchmetrics' LPIPS network (eval mode, frozen) with the backbone weights of ``path`` and the packaged
    LPIPS linear layers."""
    net, state = _read_backbone(Path(path).expanduser())  # a bad file is refused before the imports below
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    tv_model = getattr(torchvision.models, _NETS[11 if net == "alex" else 3][1])(weights=None)
    try:
        tv_model.features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                           if k.startswith("features.")})
    except RuntimeError as err:
        raise ConfigError(f"{KEY}={path}: its features do not fit torchvision's {net}: "
                          f"{str(err).splitlines()[0]}") from None
    lpips = _NoTrainLpips(pretrained=True, net=net, pnet_rand=True)  # linear layers from torchmetrics, no download
    for part in lpips.net.children():  # slice1..5 hold torchvision's feature layers under their indices
        for name, layer in part.named_children():
            layer.load_state_dict(tv_model.features[int(name)].state_dict())
    return lpips.eval()


@torch.no_grad()
def lpips_distance(network: torch.nn.Module, pred: Tensor, target: Tensor) -> float:
    """LPIPS between two images in [0, 1] (``normalize=True``, as nerfstudio).

    pred, target: Tensor  # [H, W, 3]
    """
    device = next(network.parameters()).device
    x = pred.clamp(0, 1).permute(2, 0, 1)[None].float().to(device)
    y = target.permute(2, 0, 1)[None].float().to(device)
    return float(network(x, y, normalize=True).mean())
