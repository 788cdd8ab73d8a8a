"""``typing.Protocol`` where it exists (3.8+); the 3.7 processors type-check nothing at run time."""

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment]

__all__ = ["Protocol"]
