"""An embedded benchmark whose tasks compose known primitive skills, generated in code."""

from .benchmark import SkillsBenchmark, SkillsBenchmarkConfig, SkillTask, random_word
from .primitives import SKILL_NAMES, SKILLS, Skill, apply_skills

__all__ = [
    "SkillsBenchmark",
    "SkillsBenchmarkConfig",
    "SkillTask",
    "random_word",
    "Skill",
    "SKILLS",
    "SKILL_NAMES",
    "apply_skills",
]
