"""Evaluation of pseudo-anomaly synthesizers: metrics, feature distances, detectors and the
end-to-end ``evaluate`` run (``cai-hub evaluate``).

Submodules import torch lazily from here: ``from cai.eval import metrics`` needs numpy and scipy
only.
"""
__all__ = ["metrics", "features", "detector", "evaluate", "targets", "report", "lite0"]
