"""Named tensor dimensions and the einsum equations built from them.

Every einsum in the package is written with the dimension names below and turned into
letters here, so a reader sees ``("batch", "seq", "d_in")`` rather than ``"bsi"`` and no
other module picks letters of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opt_einsum import get_symbol

__all__ = ["INDEX_LETTERS", "letter", "assign_letters", "equation"]

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


def assign_letters(names: Iterable[str]) -> dict[str, str]:
    """Give every dimension name in ``names`` its own einsum letter.

    Names in :data:`INDEX_LETTERS` keep their letter, so equations of known dimensions read the
    same everywhere. Other names (for example ``"d_in_0"``, one leg of a factored input) take the
    first unused symbol of :func:`opt_einsum.get_symbol` in order of first appearance, so the
    same names always get the same letters.

    Returns
    -------
    dict
        Name to letter, one entry per distinct name.
    """
    distinct = list(dict.fromkeys(names))
    letters = {name: INDEX_LETTERS[name] for name in distinct if name in INDEX_LETTERS}
    used = set(letters.values())
    position = 0
    for name in distinct:
        if name in letters:
            continue
        while get_symbol(position) in used:
            position += 1
        letters[name] = get_symbol(position)
        used.add(letters[name])
    return letters


def equation(
    inputs: Sequence[Sequence[str]],
    output: Sequence[str],
    letters: Mapping[str, str] | None = None,
) -> str:
    """Build an einsum equation from named dimensions.

    Parameters
    ----------
    inputs
        One sequence of dimension names per operand, e.g. ``[("batch", "d_in"), ("d_in", "rank")]``.
    output
        Dimension names of the result, e.g. ``("batch", "rank")``.
    letters
        Name to letter, as returned by :func:`assign_letters`. ``None`` accepts only the names
        of :data:`INDEX_LETTERS`.

    Returns
    -------
    str
        The equation, e.g. ``"bi,ir->br"``.
    """
    lookup = letter if letters is None else letters.__getitem__
    terms = ["".join(lookup(name) for name in operand) for operand in inputs]
    return ",".join(terms) + "->" + "".join(lookup(name) for name in output)
