"""The optional spatial encoder E_s: the defect mask as K extra prompt tokens.

Following AnomalyDiffusion (Hu et al., AAAI 2024), where a spatial encoder turns the anomaly mask
into embeddings that join the text condition, E_s here is a small conv net mapping the (1, H, W)
mask to K vectors of the text encoder's output width; they are appended to the prompt embeddings
(the UNet's cross-attention sequence grows from L to L + K tokens), so the condition says *where*
the defect is as well as *what* it is.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

SPATIAL_WEIGHTS = "spatial_encoder.safetensors"


@dataclass
class SpatialEncoderConfig:
    """Shape of a :class:`SpatialEncoder`.

    Attributes
    ----------
    num_tokens : int
        K, the number of token embeddings made from one mask.
    embed_dim : int
        Width of each token (the text encoder's hidden size: 768 for SD 1.x).
    channels : (int, ...) tuple
        Output channels of the stride-2 conv layers.
    grid : int
        The last feature map is average-pooled to ``grid`` x ``grid`` before the linear head.
    """

    num_tokens: int = 4
    embed_dim: int = 768
    channels: tuple[int, ...] = (16, 32, 64, 128)
    grid: int = 4

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.num_tokens < 1 or self.embed_dim < 1 or self.grid < 1 or not self.channels:
            raise ValueError("num_tokens, embed_dim and grid must be >= 1 and channels non-empty")


class SpatialEncoder(nn.Module):
    """E_s: (B, 1, H, W) mask in [0, 1] -> (B, K, D) token embeddings.

    Stride-2 3x3 convs with SiLU, adaptive average pooling to ``grid`` x ``grid`` (any input size),
    then a linear map to K x D followed by a LayerNorm (the text encoder's outputs are
    layer-normalised too, so the new tokens start on the same scale).
    """

    def __init__(self, config: SpatialEncoderConfig | None = None):
        super().__init__()
        self.config = config or SpatialEncoderConfig()
        layers, c_in = [], 1
        for c_out in self.config.channels:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(self.config.grid)
        self.head = nn.Linear(c_in * self.config.grid ** 2, self.config.num_tokens * self.config.embed_dim)
        self.norm = nn.LayerNorm(self.config.embed_dim)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.ndim == 3:
            mask = mask[:, None]
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must be (B, 1, H, W), got shape {tuple(mask.shape)}")
        dtype = self.head.weight.dtype
        features = self.pool(self.convs(mask.to(dtype))).flatten(1)
        tokens = self.head(features).view(mask.shape[0], self.config.num_tokens, self.config.embed_dim)
        return self.norm(tokens)

    def save(self, folder) -> Path:
        """Write ``spatial_encoder.safetensors`` (its config in the metadata) into ``folder``."""
        from safetensors.torch import save_file

        path = Path(folder) / SPATIAL_WEIGHTS
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path), metadata={"config": json.dumps(asdict(self.config))})
        return path

    @classmethod
    def load(cls, path) -> "SpatialEncoder":
        """Load an encoder written by :meth:`save` (a file, or a folder holding it)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():
            path = path / SPATIAL_WEIGHTS
        with safe_open(str(path), framework="pt") as f:
            config = SpatialEncoderConfig(**json.loads(f.metadata()["config"]))
        encoder = cls(config)
        encoder.load_state_dict(load_file(str(path)))
        return encoder


def append_spatial_tokens(prompt_embeds: torch.Tensor, encoder: SpatialEncoder | None,
                          mask: torch.Tensor | None) -> torch.Tensor:
    """``prompt_embeds`` (B, L, D) with E_s(mask) (B, K, D) appended: (B, L + K, D).

    Returns ``prompt_embeds`` unchanged when ``encoder`` is None.
    """
    if encoder is None:
        return prompt_embeds
    if mask is None:
        raise ValueError("a spatial encoder needs the mask")
    tokens = encoder(mask.to(prompt_embeds.device))
    if tokens.shape[0] != prompt_embeds.shape[0] or tokens.shape[2] != prompt_embeds.shape[2]:
        raise ValueError(f"spatial tokens {tuple(tokens.shape)} do not fit prompt embeddings "
                         f"{tuple(prompt_embeds.shape)}")
    return torch.cat([prompt_embeds, tokens.to(prompt_embeds.dtype)], dim=1)
