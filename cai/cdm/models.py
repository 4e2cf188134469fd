"""Loading the Stable Diffusion 1.x base model the CDM learns its tokens against.

The base model is a hub id or a local folder in the diffusers layout of SD 1.x: ``vae/``,
``unet/``, ``text_encoder/``, ``tokenizer/`` and ``scheduler/`` subfolders. A UNet with 9 input
channels (latents + mask + masked-image latents) is an inpainting model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The default base model: Stable Diffusion 1.5 inpainting (9-channel UNet). CDM generates by
#: inpainting a defect into a placed mask, which such a model is trained for. It must be
#: downloaded beforehand where there is no internet; pass its local folder as ``--base-model``.
DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")


class BaseModelError(RuntimeError):
    """The base model cannot be loaded (missing folder/subfolder, not reachable offline...)."""


@dataclass
class BaseModel:
    """The parts of a Stable Diffusion 1.x model (all on CPU, float32, as loaded)."""

    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    noise_scheduler: object
    source: str

    @property
    def is_inpainting(self) -> bool:
        return is_inpainting_unet(self.unet)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def is_inpainting_unet(unet) -> bool:
    """True for a UNet taking 9 input channels (SD inpainting), False for 4; ValueError otherwise."""
    channels = unet.config.in_channels
    if channels not in (4, 9):
        raise ValueError(f"UNet with {channels} input channels is neither SD (4) nor SD inpainting (9)")
    return channels == 9


def check_base_model(base_model: str) -> str:
    """Check a local base-model folder has the SD 1.x subfolders; hub ids pass through."""
    path = Path(base_model)
    if path.is_dir():
        missing = [s for s in SUBFOLDERS if not (path / s).is_dir()]
        if missing:
            raise BaseModelError(f"{base_model} lacks the subfolder(s) {missing}; a Stable Diffusion 1.x model "
                                 f"folder has {', '.join(SUBFOLDERS)}")
    elif path.exists() or base_model.startswith((".", "/", "~")) or base_model.count("/") != 1:
        raise BaseModelError(f"base model {base_model!r} is neither a model folder nor a hub id (owner/name)")
    return base_model


def load_base_model(base_model: str, revision: str | None = None, local_files_only: bool = False,
                    scheduler: str = "ddpm") -> BaseModel:
    """Load tokenizer, text encoder, VAE, UNet and the training noise scheduler.

    Parameters
    ----------
    base_model : str
        Local folder or hub id (downloaded to the hub cache on first use; offline only a local folder
        or an already cached id works).
    scheduler : {"ddpm", "model"}
        ``"ddpm"``: a :class:`~diffusers.DDPMScheduler` with the model's noise schedule (training);
        ``"model"``: the model's own scheduler class (generation).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    check_base_model(base_model)
    kwargs = dict(revision=revision, local_files_only=local_files_only)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", **kwargs)
        vae = AutoencoderKL.from_pretrained(base_model, subfolder="vae", **kwargs)
        unet = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", **kwargs)
        if scheduler == "ddpm":
            noise_scheduler = DDPMScheduler.from_pretrained(base_model, subfolder="scheduler", **kwargs)
        else:
            import diffusers
            config = DDPMScheduler.load_config(base_model, subfolder="scheduler", **kwargs)
            noise_scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise BaseModelError(f"cannot load the base model {base_model!r}: {exc}. Without internet, pass a local "
                             "Stable Diffusion 1.x folder") from exc
    is_inpainting_unet(unet)
    return BaseModel(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, unet=unet,
                     noise_scheduler=noise_scheduler, source=base_model)
