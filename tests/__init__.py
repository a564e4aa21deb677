"""eoslab's tests, a package: the test modules import the shared cases and helpers
(``tests/_*.py``, not test modules) relatively, ``from ._cases import ...``; no test module imports
another.
"""
