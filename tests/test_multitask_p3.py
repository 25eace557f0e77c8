import pytest

from tensorpoly_tn.p3 import build_p3_mixture

TEMPLATES = """dataset: toy_news
templates:
  a1: !Template
    answer_choices: World ||| Sports
    id: a1
    jinja: 'What is this about? {{text}} ||| {{answer_choices[label]}}'
    metadata: !TemplateMetadata
      original_task: true
    name: topic
  b2: !Template
    id: b2
    jinja: 'Repeat: {{text}} ||| {{text}}'
    metadata: !TemplateMetadata
      original_task: false
    name: repeat
"""


def test_templates_become_tasks(tmp_path):
    (tmp_path / "toy_news").mkdir()
    (tmp_path / "toy_news" / "templates.yaml").write_text(TEMPLATES)
    rows = [{"text": "goal scored", "label": 1}, {"text": "summit held", "label": 0}]
    requests = []

    def loader(name, subset, split):
        requests.append((name, subset, split))
        return rows

    examples, n_tasks = build_p3_mixture(tmp_path, [("toy_news", None)], examples_per_template=2,
                                         load_dataset=loader, progress=False)
    assert requests == [("toy_news", None, "train[:2]")]
    assert n_tasks == 2
    assert len(examples) == 4
    topic = [e for e in examples if e.choices]
    assert {e.target_text for e in topic} == {"Sports", "World"}
    assert len({e.task_id for e in examples}) == 2


def test_missing_templates_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"templates .*missing_set/None do not exist"):
        build_p3_mixture(tmp_path, [("missing_set", None)], load_dataset=lambda *a: [], progress=False)


def test_offline_hub_error_is_explained(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    (tmp_path / "toy_news").mkdir()
    (tmp_path / "toy_news" / "templates.yaml").write_text(TEMPLATES)
    with pytest.raises(RuntimeError, match=r"dataset 'toy_news' .* could not be loaded from the Hugging Face Hub"):
        build_p3_mixture(tmp_path, [("toy_news", None)], progress=False)
