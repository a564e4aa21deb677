"""Values the config, the numerics and the report share, each defined once here.

This module imports nothing from eoslab (nor torch), so the config and the report can use it
without loading the numerics.
"""

from __future__ import annotations

#: Weight initialisations of the MLP and the CNN (``model.init``).
INITS = ("xavier_normal", "xavier_uniform")
#: The criteria ℓ (``criterion.name``): cross-entropy and the mean squared error.
CRITERIA = ("ce", "mse")
#: Other spellings of a criterion's name, accepted where a name is looked up.
CRITERION_ALIASES = {"cross_entropy": "ce", "cross-entropy": "ce", "crossentropy": "ce"}
#: Analyses ignore the initial transient, the steps below this (docs/math.md §5, D13): the default
#: of ``analysis.skip_before`` and of the report's fits and checks.
SKIP_BEFORE = 10
#: §4: E‖J̃_i‖² ≤ 1.37 E‖J̃_1‖² for i > 1, so λ¹(G) ≤ (1 + 1.37 (L − 1)) E‖J̃_1‖²; the report
#: checks the ratio against it.
LAYER_RATIO_BOUND = 1.37
