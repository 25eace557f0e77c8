"""Tests for promptsource-format templates: loading, rendering, selection and the builtin templates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tensorpoly_tn.data import (
    HELDOUT_TASKS,
    PromptsourceLoader,
    Template,
    TemplateNotApplicableError,
    TemplateRenderError,
    get_task,
    load_few_shot,
    load_templates_file,
    render_examples,
    templates_for_task,
)

from data_paths import REAL_DATA as SHARED_DATA  # noqa: E402
# How errors name the probe template built by make_template (regex).
PROBE = r"template 'probe' \(id id-probe\) of dataset 'super_glue/rte'"

RTE_EXAMPLE = {
    "premise": "The cat sat on the mat all afternoon.",
    "hypothesis": "The cat was on the mat.",
    "idx": 0,
    "label": 0,
}

TINY_TEMPLATES = """\
dataset: super_glue
subset: rte
templates:
  id-yes-no: !Template
    answer_choices: Yes ||| No
    id: id-yes-no
    jinja: '{{premise}} Is "{{hypothesis}}" true? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      metrics:
      - Accuracy
      original_task: true
    name: yes no
    reference: test
  id-open: !Template
    answer_choices: null
    id: id-open
    jinja: 'Rewrite: {{premise}} ||| {{hypothesis}}'
    metadata: !TemplateMetadata
      original_task: false
    name: open ended
    reference: test
  id-true-false: !Template
    answer_choices: True ||| False
    id: id-true-false
    jinja: '{{premise}} True or false: {{hypothesis}} ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      original_task: false
    name: a true false
    reference: test
"""


@pytest.fixture
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "promptsource").is_dir() or not (SHARED_DATA / "t0" / "few_shot").is_dir():
        pytest.skip(f"real few-shot data and promptsource templates not found at {SHARED_DATA}")
    return SHARED_DATA


def make_template(jinja: str, answer_choices: str | None = "Yes ||| No", name: str = "probe") -> Template:
    return Template(id=f"id-{name}", name=name, dataset="super_glue/rte", jinja=jinja, answer_choices=answer_choices)


# --- loader --------------------------------------------------------------------------


def test_loader_reads_custom_tags(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(TINY_TEMPLATES, encoding="utf-8")
    templates = load_templates_file(path)
    assert [t.name for t in templates] == ["yes no", "open ended", "a true false"]
    assert templates[0].dataset == "super_glue/rte"
    assert templates[0].id == "id-yes-no"
    assert templates[0].original_task is True
    assert templates[0].choices_in_prompt is True
    assert templates[0].metrics == ("Accuracy",)
    assert templates[1].answer_choices is None


def test_loader_is_safe():
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("x: !!python/object/apply:os.system ['true']", Loader=PromptsourceLoader)


def test_load_templates_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"template file '.*absent\.yaml' does not exist"):
        load_templates_file(tmp_path / "absent.yaml")


def test_load_templates_file_without_jinja(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text("templates:\n  t1: !Template\n    name: broken\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"template 't1' has jinja=None, expected a string"):
        load_templates_file(path, "super_glue/rte")


def test_templates_for_task_selection(tmp_path):
    (tmp_path / "super_glue" / "rte").mkdir(parents=True)
    (tmp_path / "super_glue" / "rte" / "templates.yaml").write_text(TINY_TEMPLATES, encoding="utf-8")
    assert [t.name for t in templates_for_task("rte", tmp_path)] == ["yes no"]
    all_ranked = templates_for_task("rte", tmp_path, only_original_task=False)
    assert [t.name for t in all_ranked] == ["a true false", "yes no"]


def test_templates_for_task_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"template file '.*super_glue/cb/templates\.yaml' for task 'cb'"):
        templates_for_task("cb", tmp_path)


# --- rendering -----------------------------------------------------------------------


def test_apply_hand_written_rte():
    template = make_template('{{premise}} Is "{{hypothesis}}" true? ||| {{ answer_choices[label] }}')
    prompted = template.apply(RTE_EXAMPLE, label=0, task_id=4)
    assert prompted.input_text == 'The cat sat on the mat all afternoon. Is "The cat was on the mat." true?'
    assert prompted.target_text == "Yes"
    assert prompted.choices == ("Yes", "No")
    assert prompted.label == 0
    assert prompted.task_id == 4
    assert prompted.template == "probe"


def test_apply_trusts_label_over_rendered_target(caplog):
    template = make_template("{{premise}} ||| {{ answer_choices[1] }}")
    prompted = template.apply(RTE_EXAMPLE, label=0)
    assert prompted.target_text == "Yes"
    assert "using the label" in caplog.text


def test_apply_undefined_field_renders_empty():
    template = make_template("{{premise}}{{ not_a_field }} ||| {{ answer_choices[label] }}")
    assert template.apply(RTE_EXAMPLE, label=1).input_text == RTE_EXAMPLE["premise"]


def test_apply_keeps_pipes_inside_fields():
    example = dict(RTE_EXAMPLE, premise="a ||| b")
    prompted = make_template("{{premise}} ||| {{ answer_choices[label] }}").apply(example, label=0)
    assert prompted.input_text == "a ||| b"


def test_apply_without_separator():
    template = make_template("{{premise}} with no target")
    with pytest.raises(TemplateRenderError, match=rf"{PROBE} rendered no '\|\|\|'"):
        template.apply(RTE_EXAMPLE, label=0)


def test_apply_jinja_syntax_error():
    template = make_template("{{premise ||| {{ answer_choices[label] }}")
    with pytest.raises(TemplateRenderError, match=rf"{PROBE} failed to render its prompt: TemplateSyntaxError"):
        template.apply(RTE_EXAMPLE, label=0)


def test_apply_missing_field_in_expression():
    template = make_template("{{ premise.split(' ')[0] }} {{ hypothesis.lower() }} ||| x")
    with pytest.raises(TemplateRenderError, match=rf"{PROBE} failed to render its prompt"):
        template.apply({"premise": "p"}, label=0)


def test_apply_empty_output_not_applicable():
    template = make_template("{% if premise == 'never' %}{{premise}} ||| x{% endif %}")
    with pytest.raises(TemplateNotApplicableError, match=r"template 'probe' .* rendered empty text"):
        template.apply(RTE_EXAMPLE, label=0)


def test_apply_empty_input():
    with pytest.raises(TemplateRenderError, match=r"template 'probe' .* rendered an empty input"):
        make_template("{{ missing }} ||| {{ answer_choices[label] }}").apply(RTE_EXAMPLE, label=0)


def test_apply_empty_choice():
    template = make_template("{{premise}} ||| x", answer_choices="{{ option1 }} ||| {{ option2 }}")
    with pytest.raises(TemplateRenderError, match=rf"{PROBE} rendered an empty answer choice: \['', ''\]"):
        template.apply(RTE_EXAMPLE, label=0)


def test_apply_label_out_of_range():
    expected = r"label 2 is outside the 2 answer choices \['Yes', 'No'\] rendered by template 'probe'"
    with pytest.raises(ValueError, match=expected):
        make_template("{{premise}} ||| {{ answer_choices[0] }}").apply(RTE_EXAMPLE, label=2)


def test_apply_open_ended_template():
    prompted = make_template("{{premise}} ||| {{hypothesis}}", answer_choices=None).apply(RTE_EXAMPLE, label=0)
    assert prompted.choices == ()
    assert prompted.label == -1
    assert prompted.target_text == RTE_EXAMPLE["hypothesis"]


def test_choice_filter_is_deterministic():
    template = make_template("{{ ['first', 'second', 'third', 'fourth'] | choice }} {{premise}} ||| x")
    inputs = {template.apply(RTE_EXAMPLE, label=0).input_text for _ in range(5)}
    assert len(inputs) == 1


def test_render_examples_skips_not_applicable():
    examples = [dict(RTE_EXAMPLE, idx=0, label=0), dict(RTE_EXAMPLE, idx=1, label=1)]
    always = make_template("{{premise}} ||| {{ answer_choices[label] }}", name="always")
    only_first = make_template(
        "{% if idx == 0 %}{{premise}} ||| {{ answer_choices[label] }}{% endif %}", name="first only"
    )
    rendered = render_examples("rte", examples, [always, only_first], task_id=2)
    assert [p.target_text for p in rendered["always"]] == ["Yes", "No"]
    assert [p.label for p in rendered["first only"]] == [0]
    assert rendered["always"][1].task_id == 2


def test_render_examples_duplicate_names():
    template = make_template("{{premise}} ||| x")
    with pytest.raises(ValueError, match=r"template names must be unique.*repeated: \['probe'\]"):
        render_examples("rte", [RTE_EXAMPLE], [template, template])


# --- builtin templates ---------------------------------------------------------------


@pytest.mark.parametrize("task", HELDOUT_TASKS)
def test_builtin_templates_load(task):
    templates = templates_for_task(task)
    assert 2 <= len(templates) <= 3
    assert all(t.answer_choices is not None for t in templates)
    assert [t.name for t in templates] == sorted(t.name for t in templates)


def test_builtin_templates_hand_written_winogrande():
    example = {
        "sentence": "The trophy did not fit in the case because _ was too big.",
        "option1": "the trophy",
        "option2": "the case",
        "answer": "1",
    }
    rendered = render_examples("winogrande", [example], templates_for_task("winogrande"))
    for prompted in (items[0] for items in rendered.values()):
        assert prompted.choices == ("the trophy", "the case")
        assert prompted.target_text == "the trophy"
        assert "The trophy did not fit in the case" in prompted.input_text


def test_builtin_templates_hand_written_rte():
    rendered = render_examples("rte", [RTE_EXAMPLE], templates_for_task("rte"))
    assert rendered["follows from text"][0].choices == ("Yes", "No")
    assert rendered["follows from text"][0].target_text == "Yes"
    assert rendered["entailed or not"][0].target_text == "entailed"


# --- real promptsource templates on real examples ------------------------------------


def check_renders_every_example(task: str, templates: list[Template], examples: list[dict]) -> None:
    spec = get_task(task)
    for template in templates:
        for example in examples:
            label = spec.label(example)
            prompted = template.apply(example, label)
            assert prompted.input_text, (task, template.name)
            assert len(prompted.choices) >= 2, (task, template.name)
            assert prompted.target_text == prompted.choices[label], (task, template.name)


@pytest.mark.parametrize("task", HELDOUT_TASKS)
def test_real_promptsource_templates_render(task, shared_data_dir, caplog):
    templates = templates_for_task(task, shared_data_dir / "promptsource")
    assert templates, task
    check_renders_every_example(task, templates, load_few_shot(task, shared_data_dir, seed=0))
    # No "using the label" warning: the rendered target always agreed with the label function.
    assert "using the label" not in caplog.text


@pytest.mark.parametrize("task", HELDOUT_TASKS)
def test_builtin_templates_render_real(task, shared_data_dir, caplog):
    check_renders_every_example(task, templates_for_task(task), load_few_shot(task, shared_data_dir, seed=0))
    assert "using the label" not in caplog.text


def test_real_template_counts(shared_data_dir):
    root = shared_data_dir / "promptsource"
    assert len(templates_for_task("rte", root)) == 10
    # Four one-sided COPA templates are excluded, as in T-Few.
    assert len(templates_for_task("copa", root)) == 8
    assert all(not t.name.startswith("\u2026") for t in templates_for_task("copa", root))


def test_real_rte_choices_spot_check(shared_data_dir):
    templates = {t.name: t for t in templates_for_task("rte", shared_data_dir / "promptsource")}
    example = load_few_shot("rte", shared_data_dir, seed=0)[0]
    prompted = templates["MNLI crowdsource"].apply(example, get_task("rte").label(example))
    assert prompted.choices == ("Yes", "No")
    assert prompted.input_text.endswith(f'is "{example["hypothesis"]}" definitely correct? Yes or no?')
    assert prompted.target_text == ("Yes" if example["label"] == 0 else "No")


def test_real_copa_one_sided_template_not_applicable(shared_data_dir):
    copa_file = shared_data_dir / "promptsource" / "super_glue" / "copa" / "templates.yaml"
    all_templates = load_templates_file(copa_file)
    effect_only = next(t for t in all_templates if t.name == "\u2026As a result, C1 or C2?")
    examples = load_few_shot("copa", shared_data_dir, seed=0)
    cause = next(e for e in examples if e["question"] == "cause")
    effect = next(e for e in examples if e["question"] == "effect")
    assert effect_only.apply(effect, effect["label"]).target_text in (effect["choice1"], effect["choice2"])
    with pytest.raises(TemplateNotApplicableError):
        effect_only.apply(cause, cause["label"])
