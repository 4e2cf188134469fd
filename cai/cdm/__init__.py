"""CDM: the CAI-guided Diffusion Mechanism of Wang, Hu et al. 2025 (arXiv:2501.15211).

Anomaly tokens (textual inversion with the mask-weighted loss of Eq. 5) are learned from a CAI
pseudo-anomaly split against a frozen Stable Diffusion 1.x model (:mod:`cai.cdm.train`), then
inpainted into normal images to make new pseudo anomalies in CAI's schema (:mod:`cai.cdm.generate`).

Heavy dependencies (torch, diffusers, transformers, accelerate) load only when these modules are
imported, not with ``cai``.
"""
from .models import DEFAULT_BASE_MODEL

__all__ = ["DEFAULT_BASE_MODEL"]
