"""eoslab: gradient-flow training and the layerwise Jacobian alignment decomposition.

Lowell & Kastner (2024), "Training on the Edge of Stability Is Caused by Layerwise Jacobian
Alignment". The math, with equation numbers used throughout the docstrings, is in docs/math.md.
"""

__version__ = "0.1.0"

__all__ = ["Tracker"]


def __getattr__(name: str):
    """``eoslab.Tracker`` (:mod:`eoslab.tracker`), imported on first use so ``import eoslab`` stays cheap."""
    if name == "Tracker":
        from .tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'eoslab' has no attribute {name!r}")
