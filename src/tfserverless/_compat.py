"""``typing.Protocol`` where it exists (3.8+); the 3.7 processors type-check nothing at run time."""

import sys

if sys.version_info >= (3, 8):
    from typing import Protocol
else:
    Protocol = object

__all__ = ["Protocol"]
