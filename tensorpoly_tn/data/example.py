"""The unit every trainer and evaluator consumes: one prompted example with its answer choices."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PromptedExample"]


@dataclass(frozen=True)
class PromptedExample:
    """A rendered prompt, its target and the answer choices for rank classification.

    Attributes
    ----------
    input_text
        The prompt given to the encoder.
    target_text
        The text the decoder should produce; equal to ``choices[label]`` when there are choices.
    choices
        Answer choices, scored by rank classification; empty for generation-only examples.
    label
        Index of the correct choice in ``choices``, or -1 when there are no choices.
    task_id
        Row of the router that this example uses.
    template
        Identifier of the template that rendered the example (empty when not templated).
    """

    input_text: str
    target_text: str
    choices: tuple[str, ...] = field(default_factory=tuple)
    label: int = -1
    task_id: int = 0
    template: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.choices and not 0 <= self.label < len(self.choices):
            raise ValueError(
                f"label {self.label} is outside the {len(self.choices)} answer choices {list(self.choices)!r}"
            )
