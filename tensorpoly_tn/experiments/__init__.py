"""Experiments: the embedded-benchmark protocol, router analysis, results files and plots."""

from .methods import EXPERIMENT_METHODS, build_method_configs, match_rank, method_settings
from .protocol import ProtocolConfig, run_method, run_protocol
from .results import RESULTS_SCHEMA_VERSION, check_results, results_table, write_results
from .router_analysis import normalized_mutual_information, permutation_accuracy, skill_recovery, task_allocation

__all__ = [
    "EXPERIMENT_METHODS",
    "build_method_configs",
    "match_rank",
    "method_settings",
    "ProtocolConfig",
    "run_method",
    "run_protocol",
    "RESULTS_SCHEMA_VERSION",
    "check_results",
    "results_table",
    "write_results",
    "normalized_mutual_information",
    "permutation_accuracy",
    "skill_recovery",
    "task_allocation",
]
