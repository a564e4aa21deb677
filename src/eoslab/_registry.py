"""One way to extend eoslab: named things that register themselves where they are defined.

Datasets, model kinds, criteria and eigensolvers are each a :class:`Registry`. A new one is one
decorated definition (and its test), and nothing else changes: the config, the CLI and the sweeps
read the names from the registry.

* a dataset: ``@register("name")`` (:data:`eoslab.data.registry.DATASETS`) on a loader
  ``fn(split="train", data_root=None, *, option=default, ...) -> Dataset`` in a module of
  :mod:`eoslab.data`;
* a model kind: ``@MODELS.register("name")`` (:data:`eoslab.models.registry.MODELS`) on a
  :class:`~eoslab.models.Model` class with the class methods and ``config_fields`` of
  :class:`~eoslab.models.registry.ModelKind`, in a module of :mod:`eoslab.models`;
* a criterion: ``@CRITERIA.register("name", aliases=(...))`` (:data:`eoslab.criteria.CRITERIA`) on
  a :class:`~eoslab.criteria.Criterion` with its ``target_loss`` in :mod:`eoslab.criteria`;
* an eigensolver: ``@register_eigensolver("name")`` (:data:`eoslab.eigen.registry.EIGENSOLVERS`) on
  a solver class in a module of :mod:`eoslab.eigen`.

A name (or alias) registered twice is refused; a lookup of a name that is not registered names
the ones that are. Both are a :class:`~eoslab.errors.RegistryError` (a ``ValueError``).

A registry made with ``discover="package"`` imports every module of that package before its
first read, so a module that registers itself needs no one to import it (the dataset loaders,
the model kinds and the eigensolvers: their modules import the registry, which therefore cannot
import them).

This module imports nothing from eoslab but its errors, so every module can use it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar, cast

from .errors import RegistryError

T = TypeVar("T")
S = TypeVar("S")  # what a decorator registers: a T, and it keeps its own type (a subclass, a function)


class Registry(Generic[T]):
    """Things of one kind by name; each is added with the :meth:`register` decorator.

    Reading it: ``registry[name]`` (a name or an alias), ``name in registry``, ``iter(registry)``
    and ``len(registry)`` (over the registered names, sorted; aliases are not names),
    :meth:`names`, :meth:`canonical`, :meth:`name_of`.

    Args:
        what: what an entry is, for messages (``"dataset"``, ``"model kind"``, ``"criterion"``).
        discover: a package whose modules are imported before the first read (see the module
            docstring); None: the entries register when their modules are imported by others.
    """

    def __init__(self, what: str, *, discover: str | None = None) -> None:
        self.what = what
        self._discover = discover
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[S], S]:
        """Decorator: make the decorated object this registry's ``name`` (and ``aliases``, other
        spellings a lookup accepts); it returns the object unchanged.

        Raises:
            RegistryError: ``name`` or an alias is already taken.
        """
        keys = (name, *aliases)

        def decorate(obj: S) -> S:
            for key in keys:
                if key in self._entries or key in self._aliases:
                    taken = self._entries[self._aliases.get(key, key)]
                    raise RegistryError(f"{self.what} {key!r} is already registered (by {_origin(taken)})")
            self._entries[name] = cast(T, obj)
            self._aliases.update(dict.fromkeys(keys[1:], name))
            return obj

        return decorate

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` or of the alias ``name``.

        Raises:
            RegistryError: neither, with the registered names.
        """
        self._load()
        key = self._aliases.get(name, name)
        if key not in self._entries:
            raise RegistryError(f"unknown {self.what} {name!r}; available: {', '.join(self.names())}")
        return key

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        self._load()
        return tuple(sorted(self._entries))

    def name_of(self, obj: object) -> str:
        """The name ``obj`` is registered under (a KeyError if it is not)."""
        self._load()
        for name, entry in self._entries.items():
            if entry is obj:
                return name
        raise KeyError(f"{obj!r} is not a registered {self.what}")

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __delitem__(self, name: str) -> None:
        """Unregister ``name`` and its aliases (a test's temporary entry)."""
        del self._entries[name]
        self._aliases = {alias: key for alias, key in self._aliases.items() if key != name}

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"

    def _load(self) -> None:
        """Import the modules of the ``discover`` package once (each registers what it defines)."""
        if self._discover is None:
            return
        package, self._discover = self._discover, None
        try:
            for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
                importlib.import_module(f"{package}.{info.name}")
        except BaseException:
            self._discover = package  # a failed import is retried (and raises again) on the next read
            raise


def _origin(obj: object) -> str:
    """Where a registered object comes from: ``module.qualname`` (a class or a function), else its type."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else type(obj).__qualname__
