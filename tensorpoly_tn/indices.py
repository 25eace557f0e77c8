"""Named tensor dimensions and the einsum equations built from them.

Every einsum in the package is written with the dimension names below and turned into
letters here, so a reader sees ``("batch", "seq", "d_in")`` rather than ``"bsi"`` and no
other module picks letters of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["INDEX_LETTERS", "letter", "equation"]

# One letter per named dimension. Names are the ones used in docstrings across the package.
INDEX_LETTERS: dict[str, str] = {
    "batch": "b",
    "seq": "s",
    "d_in": "i",
    "d_out": "o",
    "rank": "r",
    "term": "k",
    "order": "n",
    "leaf": "l",
    "leaf_in": "p",
    "leaf_out": "q",
    "task": "t",
    "skill": "m",
    "split": "h",
    "split_in": "u",
    "split_out": "v",
}


def letter(name: str) -> str:
    """Return the einsum letter of the named dimension ``name``."""
    try:
        return INDEX_LETTERS[name]
    except KeyError:
        known = ", ".join(sorted(INDEX_LETTERS))
        raise ValueError(f"unknown dimension name {name!r}; known names are: {known}") from None


def equation(inputs: Sequence[Sequence[str]], output: Sequence[str]) -> str:
    """Build an einsum equation from named dimensions.

    Parameters
    ----------
    inputs
        One sequence of dimension names per operand, e.g. ``[("batch", "d_in"), ("d_in", "rank")]``.
    output
        Dimension names of the result, e.g. ``("batch", "rank")``.

    Returns
    -------
    str
        The equation, e.g. ``"bi,ir->br"``.
    """
    terms = ["".join(letter(name) for name in operand) for operand in inputs]
    return ",".join(terms) + "->" + "".join(letter(name) for name in output)
