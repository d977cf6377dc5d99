"""Solvers and their registry: the config name is the one identifier (config, registry,
MLflow, tests); ``registry.SOLVERS`` holds each solver's function, options and support."""

from __future__ import annotations

from ._problem import Callback, FitResult, Problem, SeparableDataWarning
from .registry import (
    SOLVER_NAMES,
    SOLVERS,
    IgnoredParameterWarning,
    SolverSpec,
    allowed_solvers,
    check_compatibility,
    check_solver_options,
    choose_auto,
    options_for,
)

__all__ = ["SOLVERS", "SOLVER_NAMES", "Callback", "FitResult", "IgnoredParameterWarning",
           "Problem", "SeparableDataWarning", "SolverSpec", "allowed_solvers",
           "check_compatibility", "check_solver_options", "choose_auto", "options_for"]
