"""The ``clip`` teacher: open_clip ViT with MaskCLIP-style dense features in CLIP's joint image-text space.

Dense features (MaskCLIP): the tokens entering the last transformer block are ``ln_1``-normalised and sent
through the attention's *value* projection and ``out_proj`` only -- no query-key mixing, no residual, no
MLP -- then through ``ln_post`` and the visual projection. Each patch then keeps its own content but lands
where the pooled image embedding lives, so patches compare to text embeddings by dot products.

Input: the image is resized (bilinear, antialiased) to the model's square ``image_size`` (224 for
ViT-B-16) ignoring its aspect, and the map is the full ``[grid, grid]`` patch grid (14 x 14 for ViT-B-16).
The trainer upsamples maps to the image size, so the squashing is undone spatially; it keeps the
positional embeddings exactly as trained.

Weights: ``weights`` is a local open_clip checkpoint (``.safetensors`` / ``.bin`` / ``.pt``) or an
open_clip pretrained tag of ``model`` (default ``openai``, fetched through the Hugging Face hub cache).
``random_weights=True`` builds the architecture with a fixed-seed random init (tests only).
Note: OpenAI weights use QuickGELU; with a local OpenAI checkpoint pass ``model=ViT-B-16-quickgelu``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dff_gs.core.errors import ConfigError
from dff_gs.teachers.base import Teacher, hub_error, normalize, register_teacher, weights_error
from dff_gs.teachers.images import check_image, image_to_batch

DEFAULT_MODEL = "ViT-B-16"
DEFAULT_TAG = "openai"
HOW = "pass teacher.weights=/path/to/open_clip_model.safetensors (a local open_clip checkpoint of the model)"


class ClipTeacher(Teacher):
    """open_clip ViT, MaskCLIP dense features + text encoder (see the module docstring)."""

    name = "clip"
    supports_text = True
    supports_patch = True

    def __init__(self, model: str = DEFAULT_MODEL, weights: str = "", random_weights: bool = False,
                 device: str = ""):
        import open_clip  # light: no weights are touched here

        self.model_name = model or DEFAULT_MODEL
        self.config = open_clip.get_model_config(self.model_name)
        if self.config is None:
            raise ConfigError(f"clip teacher: unknown open_clip model {self.model_name!r} "
                              f"(see open_clip.list_models(), e.g. ViT-B-16, ViT-B-32, ViT-L-14)")
        self.random_weights = bool(random_weights)
        self.weights, self.tag = "", ""
        if not self.random_weights:
            tags = open_clip.list_pretrained_tags_by_model(self.model_name)
            if not weights or weights in tags:
                self.tag = weights or DEFAULT_TAG
                if self.tag not in tags:
                    raise ConfigError(f"clip teacher: {self.model_name!r} has no pretrained tag {self.tag!r} "
                                      f"(tags: {', '.join(tags) or 'none'}); {HOW}")
            else:
                path = Path(weights).expanduser()
                if not path.is_file():
                    raise ConfigError(weights_error("clip", [str(path)], f"It is neither a file nor a pretrained "
                                                    f"tag of {self.model_name} ({', '.join(tags) or 'none'}); {HOW}"))
                self.weights = str(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model = None
        self._tokenizer = None

    # ---------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.config["embed_dim"])

    def settings(self) -> dict:
        source = "random" if self.random_weights else (self.tag or self.weights)
        return {"model": self.model_name, "weights": source, "dense": "maskclip-value"}

    @property
    def model(self):
        """The open_clip model (built on first use)."""
        if self._model is None:
            self._model = self._build().to(self.device).eval()
            visual = self._model.visual
            from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

            if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None or not isinstance(
                    visual.transformer.resblocks[-1], ResidualAttentionBlock):
                raise ConfigError(f"clip teacher: {self.model_name!r} is not a plain open_clip ViT; "
                                  f"MaskCLIP features need one (e.g. ViT-B-16, ViT-L-14)")
        return self._model

    def _build(self):
        import open_clip

        if self.random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return open_clip.create_model(self.model_name, pretrained=None)
        if self.weights:
            try:
                return open_clip.create_model(self.model_name, pretrained=self.weights, require_pretrained=True)
            except Exception as err:  # noqa: BLE001  a bad file: say which and why
                raise ConfigError(f"clip teacher: cannot load {self.weights} into {self.model_name}: {err}") from None
        cfg = open_clip.get_pretrained_cfg(self.model_name, self.tag)
        quick_gelu = bool(cfg.get("quick_gelu")) and not self.config.get("quick_gelu", False)
        try:
            return open_clip.create_model(self.model_name, pretrained=self.tag, force_quick_gelu=quick_gelu,
                                          require_pretrained=True)
        except Exception as err:  # noqa: BLE001  offline hub, missing file, ...: say where we looked
            raise hub_error("clip", cfg.get("hf_hub") or cfg.get("url") or "?", HOW, err) from None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        return self._tokenizer

    # ---------------------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)`` of the map ``features`` returns."""
        return tuple(self.model.visual.grid_size)

    def _input(self, image: Tensor) -> Tensor:
        """image: Tensor  # [H, W, 3] in [0, 1]  ->  Tensor  # [1, 3, S, S] normalised"""
        import open_clip

        check_image(image, "clip")
        visual = self.model.visual
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        return image_to_batch(image, tuple(visual.image_size), mean, std, self.device)

    def block_input(self, batch: Tensor) -> Tensor:
        """Tokens entering the last transformer block (class token first).

        batch: Tensor  # [B, 3, S, S] normalised input  ->  tokens: Tensor  # [B, 1 + gh * gw, width]
        """
        visual = self.model.visual
        x = visual.conv1(batch).flatten(2).transpose(1, 2)  # [B, N, width]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        transformer = visual.transformer
        batch_first = getattr(transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in transformer.resblocks[:-1]:
            x = block(x)
        return x if batch_first else x.transpose(0, 1)

    def value_path(self, tokens: Tensor) -> Tensor:
        """MaskCLIP's last block: ``ls_1(out_proj(v_proj(ln_1(tokens))))``, each token on its own.

        tokens: Tensor  # [B, L, width]  ->  Tensor  # [B, L, width]
        """
        block = self.model.visual.transformer.resblocks[-1]
        attn = block.attn
        d = attn.embed_dim
        w_v = attn.in_proj_weight[2 * d:] if attn._qkv_same_embed_dim else attn.v_proj_weight
        b_v = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
        v = F.linear(block.ln_1(tokens), w_v, b_v)
        return block.ls_1(attn.out_proj(v))

    def project(self, tokens: Tensor) -> Tensor:
        """``ln_post`` and the visual projection into the joint space: ``[..., width] -> [..., C]``."""
        visual = self.model.visual
        x = visual.ln_post(tokens)
        return x @ visual.proj if visual.proj is not None else x

    @torch.no_grad()
    def features(self, image: Tensor) -> Tensor:
        """image: Tensor  # [H, W, 3] in [0, 1]  ->  feats: Tensor  # [gh, gw, C] unit norm (14 x 14 for ViT-B-16)"""
        tokens = self.block_input(self._input(image))
        feats = self.project(self.value_path(tokens[:, 1:]))  # patch tokens only: [1, gh * gw, C]
        gh, gw = self.grid
        return normalize(feats[0].reshape(gh, gw, -1))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        """texts: K strings  ->  Tensor  # [K, C] unit-norm text embeddings"""
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError(f"text query must be non-empty strings, got {texts!r}")
        tokens = self.tokenizer(list(texts)).to(self.device)
        return normalize(self.model.encode_text(tokens))


register_teacher("clip", ClipTeacher)
