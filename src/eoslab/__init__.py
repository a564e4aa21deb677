"""eoslab: gradient-flow training and the layerwise Jacobian alignment decomposition.

Lowell & Kastner (2024), "Training on the Edge of Stability Is Caused by Layerwise Jacobian
Alignment". The math, with equation numbers used throughout the docstrings, is in docs/math.md.
"""

__version__ = "0.1.0"
