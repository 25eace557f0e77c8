"""Data for the T0 held-out experiments: task registry, few-shot files, prompt templates and hub fallback."""

from .example import PromptedExample
from .hub import HubUnavailableError, load_hub_validation, sample_few_shot_from_hub
from .t0 import (
    DATA_DIR_ENV,
    HELDOUT_TASKS,
    TASK_SPECS,
    DataNotFoundError,
    TaskSpec,
    few_shot_root,
    few_shot_seeds,
    get_task,
    load_few_shot,
    offline_split,
    read_jsonl,
    resolve_data_dir,
)
from .templates import (
    PromptsourceLoader,
    Template,
    TemplateNotApplicableError,
    TemplateRenderError,
    load_templates_file,
    render_examples,
    templates_for_task,
)

__all__ = [
    "PromptedExample",
    "HELDOUT_TASKS",
    "TASK_SPECS",
    "DATA_DIR_ENV",
    "TaskSpec",
    "DataNotFoundError",
    "get_task",
    "resolve_data_dir",
    "few_shot_root",
    "read_jsonl",
    "few_shot_seeds",
    "load_few_shot",
    "offline_split",
    "PromptsourceLoader",
    "Template",
    "TemplateRenderError",
    "TemplateNotApplicableError",
    "load_templates_file",
    "templates_for_task",
    "render_examples",
    "HubUnavailableError",
    "sample_few_shot_from_hub",
    "load_hub_validation",
]
