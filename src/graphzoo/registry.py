"""A tiny name -> object registry with helpful errors.

Used for energies (:data:`graphzoo.energies.ENERGIES`), backbones
(:data:`graphzoo.models.BACKBONES`) and data readers. A lookup of an unknown name raises
``ValueError`` that lists the valid names and suggests the closest one ("did you mean ...?"), in
the manner of MONAI's ``look_up_option``. :func:`did_you_mean` is that suggestion on its own, for
any other closed set of names (config keys, experiment keys, baselines).
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "did_you_mean"]


def did_you_mean(name: object, options: Iterable[str]) -> str:
    """The hint ``" Did you mean 'closest'?"`` for a name not in ``options``, or ``""``.

    Meant to end an error message: ``f"unknown key {key!r}.{did_you_mean(key, keys)}"``. The
    closest option is difflib's best match with a similarity ratio of at least 0.5.

    >>> did_you_mean("poison", ["laplace", "poisson"])
    " Did you mean 'poisson'?"
    >>> did_you_mean("xyz", ["laplace", "poisson"])
    ''
    """
    if ":" in str(name):  # YAML reads {alpha:2} as the key "alpha:2": it needs a space after the colon
        return f" Write 'key: value' with a space after the colon ({str(name).replace(':', ': ', 1)})."
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Map lower-case names to objects (functions or classes).

    Parameters
    ----------
    kind : str
        What the registry holds ("energy", "backbone", ...), used in error messages.

    Examples
    --------
    >>> SHAPES = Registry("shape")
    >>> @SHAPES.register("square")
    ... def square(x):
    ...     return x * x
    >>> SHAPES.get("square")(3)
    9
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator that registers its target under ``name`` (default: ``target.__name__``).

        A duplicate name raises ``ValueError``: silently replacing an entry is how two plug-ins
        end up shadowing each other without anyone noticing.
        """

        def decorator(obj: T) -> T:
            key = name if name is not None else obj.__name__  # type: ignore[attr-defined]
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry called ``name``; unknown names raise ``ValueError`` with a suggestion."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self._entries)
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}."

    def names(self) -> list[str]:
        """Sorted list of the registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
