"""Promptsource-format prompt templates: loading, rendering and the package's own templates.

A template file is in the YAML format of promptsource (Bach et al., 2022). Its
``templates`` mapping goes from template id to a ``!Template``. Each has a Jinja ``jinja``
source, in which ``|||`` separates input from target, an optional ``answer_choices`` Jinja
source, in which ``|||`` separates the choices, and a ``!TemplateMetadata`` block. The
package's builtin templates use the same format, so one loader reads both.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from .example import PromptedExample
from .t0 import TaskSpec, get_task

__all__ = [
    "PromptsourceLoader",
    "Template",
    "TemplateRenderError",
    "TemplateNotApplicableError",
    "load_templates_file",
    "templates_for_task",
    "render_examples",
]

logger = logging.getLogger(__name__)

SEPARATOR = "|||"
# Stands in for a literal "|||" inside example fields while rendering, so that only
# the template's own separators split the output (promptsource does the same).
_PIPE_PLACEHOLDER = "\u241e\u241eTENSORPOLY_PIPE\u241e\u241e"
_RNG_VARIABLE = "_template_rng"


class TemplateRenderError(ValueError):
    """A template could not turn an example into an input, a target and answer choices."""


class TemplateNotApplicableError(TemplateRenderError):
    """A template rendered to empty text for an example, so it does not apply to it.

    Promptsource templates guarded by a condition on the example (for instance a COPA
    template written only for "effect" questions) render nothing for the other examples.
    """


class PromptsourceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads promptsource's ``!Template`` and ``!TemplateMetadata`` tags as dicts."""


def _construct_tagged_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a mapping after tag {node.tag}, found {node.id}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


PromptsourceLoader.add_constructor("!Template", _construct_tagged_mapping)
PromptsourceLoader.add_constructor("!TemplateMetadata", _construct_tagged_mapping)


@jinja2.pass_context
def _choice_filter(context: jinja2.runtime.Context, items: Sequence[Any]) -> Any:
    rng = context.get(_RNG_VARIABLE)
    if not isinstance(rng, random.Random):
        rng = random.Random(0)
    return rng.choice(list(items))


def _most_frequent_filter(items: Iterable[Any]) -> list[Any] | None:
    counts = Counter(items).most_common()
    if not counts:
        return None
    top = counts[0][1]
    return [item for item, count in counts if count == top]


def _make_environment() -> SandboxedEnvironment:
    # The default Undefined (not StrictUndefined) is deliberate: promptsource templates
    # test fields that may be absent and expect them to render as empty text.
    environment = SandboxedEnvironment(keep_trailing_newline=False)
    environment.globals["zip"] = zip
    environment.filters["choice"] = _choice_filter
    environment.filters["most_frequent"] = _most_frequent_filter
    return environment


_ENVIRONMENT = _make_environment()


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> jinja2.Template:
    return _ENVIRONMENT.from_string(source)


def _protect_pipes(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(SEPARATOR, _PIPE_PLACEHOLDER)
    if isinstance(value, list):
        return [_protect_pipes(item) for item in value]
    return value


def _restore_pipes(text: str) -> str:
    return text.replace(_PIPE_PLACEHOLDER, SEPARATOR)


@dataclass(frozen=True)
class Template:
    """One prompt template in promptsource format.

    Attributes
    ----------
    id
        Template identifier (a UUID in promptsource files).
    name
        Template name, unique within its dataset.
    dataset
        Dataset name with its subset, e.g. ``"super_glue/rte"``.
    jinja
        Jinja source of the prompt; ``|||`` separates the input from the target.
    answer_choices
        Jinja source of the answer choices separated by ``|||``, or ``None`` for an
        open-ended template.
    original_task
        Whether the template asks for the dataset's original task (``None`` when unknown).
    choices_in_prompt
        Whether the input lists the answer choices (``None`` when unknown).
    metrics
        Names of the metrics the template is evaluated with, e.g. ``("Accuracy",)``.
    reference
        Author or source of the template.
    """

    id: str
    name: str
    dataset: str
    jinja: str
    answer_choices: str | None = None
    original_task: bool | None = None
    choices_in_prompt: bool | None = None
    metrics: tuple[str, ...] = ()
    reference: str = ""

    def _describe(self) -> str:
        return f"template {self.name!r} (id {self.id}) of dataset {self.dataset!r}"

    def _render(self, source: str, context: dict[str, Any], what: str) -> str:
        try:
            return _compile(source).render(**context)
        except jinja2.TemplateError as err:
            raise TemplateRenderError(
                f"{self._describe()} failed to render its {what}: {type(err).__name__}: {err}"
            ) from err
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            raise TemplateRenderError(
                f"{self._describe()} failed to render its {what}, probably because of a missing or "
                f"mistyped field in the example: {type(err).__name__}: {err}"
            ) from err

    def render_choices(self, example: Mapping[str, Any]) -> list[str]:
        """Render the answer choices for ``example`` (empty for an open-ended template)."""
        if self.answer_choices is None:
            return []
        context = self._context(example, None)
        rendered = self._render(self.answer_choices, context, "answer choices")
        choices = [_restore_pipes(choice).strip() for choice in rendered.split(SEPARATOR)]
        if any(not choice for choice in choices):
            raise TemplateRenderError(
                f"{self._describe()} rendered an empty answer choice: {choices!r}; "
                f"check that the example has the fields that answer_choices uses"
            )
        return choices

    def _context(self, example: Mapping[str, Any], choices: list[str] | None) -> dict[str, Any]:
        if "answer_choices" in example or _RNG_VARIABLE in example:
            raise TemplateRenderError(
                f"{self._describe()} cannot render an example with a field named 'answer_choices' or "
                f"{_RNG_VARIABLE!r}, because the template reserves these names; rename the field"
            )
        context = {key: _protect_pipes(value) for key, value in example.items()}
        context["answer_choices"] = choices
        # The "choice" filter draws from a generator seeded by the template and the
        # example, so the same example always gets the same prompt.
        seed_text = f"{self.id}:{json.dumps(example, sort_keys=True, default=str)}"
        context[_RNG_VARIABLE] = random.Random(seed_text)
        return context

    def apply(self, example: Mapping[str, Any], label: int, task_id: int = 0) -> PromptedExample:
        """Render ``example`` into a prompt, a target and answer choices.

        Parameters
        ----------
        example
            Raw example in the field layout of its Hugging Face dataset.
        label
            0-based index of the gold answer choice. It decides the target: when the
            target rendered by the template differs from ``choices[label]``, ``label`` wins
            and a warning is logged. Ignored for an open-ended template (label -1).
        task_id
            Router row stored in the returned example.

        Raises
        ------
        TemplateNotApplicableError
            When the whole template renders to blank text for this example.
        TemplateRenderError
            When rendering fails, the output has no ``|||`` separator, or the input is empty.
        ValueError
            When ``label`` is outside the rendered answer choices.
        """
        choices = self.render_choices(example)
        rendered = self._render(self.jinja, self._context(example, choices), "prompt")
        if not rendered.strip():
            raise TemplateNotApplicableError(f"{self._describe()} rendered empty text, so it does not apply")
        parts = [_restore_pipes(part).strip() for part in rendered.split(SEPARATOR)]
        if len(parts) < 2:
            raise TemplateRenderError(
                f"{self._describe()} rendered no '|||' separator between input and target: {rendered[:200]!r}"
            )
        input_text, target_text = parts[0], parts[1]
        if len(parts) > 2:
            logger.debug("%s rendered %d '|||' parts, using the first two", self._describe(), len(parts))
        if not input_text:
            raise TemplateRenderError(f"{self._describe()} rendered an empty input before '|||'")

        if not choices:
            return PromptedExample(input_text, target_text, (), -1, task_id, self.name)
        if not 0 <= label < len(choices):
            raise ValueError(
                f"label {label} is outside the {len(choices)} answer choices {choices!r} rendered by "
                f"{self._describe()}; expected 0 <= label < {len(choices)}"
            )
        if target_text != choices[label]:
            logger.warning(
                "%s rendered target %r, but label %d selects %r; using the label",
                self._describe(),
                target_text,
                label,
                choices[label],
            )
        return PromptedExample(input_text, choices[label], tuple(choices), label, task_id, self.name)


def _template_from_entry(key: str, entry: Any, dataset: str, path: str) -> Template:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{path}: template {key!r} is a {type(entry).__name__}, expected a !Template mapping")
    for field_name in ("name", "jinja"):
        if not isinstance(entry.get(field_name), str):
            raise ValueError(
                f"{path}: template {key!r} has {field_name}={entry.get(field_name)!r}, expected a string"
            )
    metadata = entry.get("metadata") or {}
    answer_choices = entry.get("answer_choices")
    return Template(
        id=str(entry.get("id", key)),
        name=entry["name"],
        dataset=dataset,
        jinja=entry["jinja"],
        answer_choices=None if answer_choices is None else str(answer_choices),
        original_task=metadata.get("original_task"),
        choices_in_prompt=metadata.get("choices_in_prompt"),
        metrics=tuple(metadata.get("metrics") or ()),
        reference=str(entry.get("reference") or ""),
    )


def _parse_templates(text: str, dataset: str | None, path: str) -> list[Template]:
    try:
        document = yaml.load(text, Loader=PromptsourceLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid template YAML: {err}") from err
    if not isinstance(document, Mapping) or not isinstance(document.get("templates"), Mapping):
        raise ValueError(f"{path}: expected a mapping with a 'templates' mapping (promptsource format)")
    if dataset is None:
        subset = document.get("subset")
        dataset = str(document.get("dataset", "")) + (f"/{subset}" if subset else "")
    return [_template_from_entry(str(key), entry, dataset, path) for key, entry in document["templates"].items()]


def load_templates_file(path: str | os.PathLike[str], dataset: str | None = None) -> list[Template]:
    """Load every template of a promptsource-format ``templates.yaml``, in file order.

    Parameters
    ----------
    path
        The YAML file.
    dataset
        Dataset name stored in each template; by default ``<dataset>[/<subset>]`` from the file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not valid promptsource YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"template file {str(path)!r} does not exist")
    return _parse_templates(path.read_text(encoding="utf-8"), dataset, str(path))


def _builtin_templates(spec: TaskSpec) -> list[Template]:
    folder = importlib.resources.files(__package__).joinpath("builtin_templates")
    resource = folder.joinpath(f"{spec.builtin_templates}.yaml")
    if not resource.is_file():
        raise FileNotFoundError(
            f"builtin template file builtin_templates/{spec.builtin_templates}.yaml for task {spec.name!r} is "
            f"missing from the installed package; reinstall tensorpoly_tn or pass a promptsource templates folder"
        )
    return _parse_templates(resource.read_text(encoding="utf-8"), None, f"builtin_templates/{resource.name}")


def templates_for_task(
    task: str | TaskSpec,
    templates_dir: str | os.PathLike[str] | None = None,
    only_original_task: bool = True,
) -> list[Template]:
    """Select the rank-classification templates of a held-out task, sorted by name.

    Parameters
    ----------
    task
        Held-out task name or spec.
    templates_dir
        Promptsource templates root (the folder with ``anli/``, ``super_glue/``, ...). When
        ``None``, the package's builtin templates are used.
    only_original_task
        Keep only templates whose metadata marks the dataset's original task. When no
        template qualifies, all templates with answer choices are kept instead.

    Returns
    -------
    list of Template
        Templates that have answer choices and are not in ``TaskSpec.excluded_templates``.

    Raises
    ------
    FileNotFoundError
        When ``<templates_dir>/<promptsource_dir>/templates.yaml`` does not exist.
    ValueError
        When no template with answer choices remains.
    """
    spec = get_task(task)
    if templates_dir is None:
        templates = _builtin_templates(spec)
        source = "builtin templates"
    else:
        path = Path(templates_dir) / spec.promptsource_dir / "templates.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"promptsource template file {str(path)!r} for task {spec.name!r} does not exist; "
                f"templates_dir must be the promptsource templates root that contains {spec.promptsource_dir}/"
            )
        templates = load_templates_file(path, spec.dataset_name)
        source = str(path)

    ranked = [t for t in templates if t.answer_choices is not None and t.name not in spec.excluded_templates]
    selected = ranked
    if only_original_task:
        selected = [t for t in ranked if t.original_task]
        if not selected:
            logger.warning("%s: no original-task template in %s, using all %d", spec.name, source, len(ranked))
            selected = ranked
    if not selected:
        raise ValueError(f"{source} has no template with answer_choices for task {spec.name!r}")
    return sorted(selected, key=lambda t: t.name)


def render_examples(
    task: str | TaskSpec,
    raw_examples: Iterable[Mapping[str, Any]],
    templates: Sequence[Template],
    task_id: int = 0,
) -> dict[str, list[PromptedExample]]:
    """Render every example with every template, keyed by template name.

    The gold label comes from the task's label function. An example that a template
    does not apply to (see :class:`TemplateNotApplicableError`) is left out of that
    template's list, and the count is logged.

    Raises
    ------
    ValueError
        When two templates share a name, or an example has no valid label.
    TemplateRenderError
        When a template fails on an example for any other reason.
    """
    spec = get_task(task)
    names = [template.name for template in templates]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"template names must be unique, because they key the result; repeated: {duplicates}")

    examples = list(raw_examples)
    labels = [spec.label(example) for example in examples]
    rendered: dict[str, list[PromptedExample]] = {}
    for template in templates:
        prompted = []
        for example, label in zip(examples, labels):
            try:
                prompted.append(template.apply(example, label, task_id))
            except TemplateNotApplicableError:
                continue
        skipped = len(examples) - len(prompted)
        if skipped:
            logger.info(
                "%s: template %r does not apply to %d of %d examples", spec.name, template.name, skipped, len(examples)
            )
        rendered[template.name] = prompted
    return rendered
