"""Primitive skills of the embedded benchmark: small text operations on a lowercase word.

Each skill is one operation on a string of letters. A task applies a set of skills, always in
the canonical order of :data:`SKILLS`, so a task is defined by the set alone and two tasks with
the same set produce the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Skill", "SKILLS", "SKILL_NAMES", "apply_skills", "VOWELS"]

VOWELS = frozenset("aeiou")


def _drop_vowels(word: str) -> str:
    return "".join(c for c in word if c.lower() not in VOWELS)


def _shift(word: str) -> str:
    # Caesar shift by one letter, a -> b, ..., z -> a; the input is lowercase at this point.
    return "".join(chr((ord(c) - ord("a") + 1) % 26 + ord("a")) for c in word)


def _sort(word: str) -> str:
    return "".join(sorted(word))


def _reverse(word: str) -> str:
    return word[::-1]


def _upper(word: str) -> str:
    return word.upper()


def _wrap(word: str) -> str:
    return f"[{word}]"


@dataclass(frozen=True)
class Skill:
    """One primitive text operation.

    Attributes
    ----------
    name
        Identifier used in task names and plots.
    description
        What the operation does, in words.
    function
        The operation, from string to string.
    """

    name: str
    description: str
    function: Callable[[str], str]


# Canonical order of application. Operations that read letters (drop_vowels, shift, sort)
# come before the ones that only rearrange or decorate the string.
SKILLS: tuple[Skill, ...] = (
    Skill("drop_vowels", "remove the letters a, e, i, o, u", _drop_vowels),
    Skill("shift", "replace every letter by the next one in the alphabet (z becomes a)", _shift),
    Skill("sort", "sort the letters alphabetically", _sort),
    Skill("reverse", "reverse the order of the letters", _reverse),
    Skill("upper", "write the letters in upper case", _upper),
    Skill("wrap", "put the word in square brackets", _wrap),
)
SKILL_NAMES: tuple[str, ...] = tuple(skill.name for skill in SKILLS)


def apply_skills(word: str, skills: Sequence[int]) -> str:
    """Apply the skills with indices ``skills`` to ``word`` in the canonical order of :data:`SKILLS`.

    Raises
    ------
    ValueError
        When an index is outside ``[0, len(SKILLS))``.
    """
    for index in skills:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(SKILLS):
            raise ValueError(f"skill index must be an integer in [0, {len(SKILLS)}), got {index!r}")
    for index in sorted(set(skills)):
        word = SKILLS[index].function(word)
    return word
