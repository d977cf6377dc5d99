"""The Hydra config: every group option composes into typed dataclasses; bad input fails early."""

from __future__ import annotations

import dataclasses

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from pipeline import config as cfgmod
from tests.conftest import CONF, compose

GROUPS = ["dataset", "model", "reg", "solver", "backend", "tracking"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_defaults_compose_to_typed_dataclasses():
    cfg = compose()
    assert isinstance(cfg, cfgmod.Config)
    assert isinstance(cfg.dataset, cfgmod.DatasetConfig) and cfg.dataset.name == "breast_cancer"
    assert (cfg.model.name, cfg.reg.name, cfg.solver.name) == ("logistic", "l2", "auto")
    assert cfg.tracking.uri is None and cfg.backend.name == "cpu"


def test_the_groups_offer_what_the_issue_lists():
    assert set(_options("model")) == set(cfgmod.MODELS)
    assert set(_options("reg")) == set(cfgmod.REGS)
    assert set(_options("solver")) == set(cfgmod.SOLVERS)
    assert {"breast_cancer", "iris", "wine", "digits", "diabetes", "multilabel", "file",
            "synth_regression", "synth_binary", "synth_multiclass",
            "synth_multilabel"} <= set(_options("dataset"))


@pytest.mark.parametrize("solver", cfgmod.SOLVERS)
def test_every_solver_option_composes_with_its_typed_schema(solver):
    model = "linear" if solver in ("cd", "closed_form") else "logistic"
    dataset = "diabetes" if model == "linear" else "breast_cancer"
    cfg = compose([f"solver={solver}", f"model={model}", f"dataset={dataset}", "reg=l2"])
    assert cfg.solver.name == solver
    assert isinstance(cfg.solver, cfgmod.SOLVER_SCHEMAS.get(solver, cfgmod.SolverConfig))


@pytest.mark.parametrize("dataset", ["synth_regression", "synth_binary", "synth_multiclass",
                                     "synth_multilabel", "iris", "multilabel"])
def test_dataset_options_compose(dataset):
    model = {"regression": "linear", "binary": "logistic", "multiclass": "softmax",
             "multilabel": "multilabel"}
    task = "multilabel" if "multilabel" in dataset else (
        "multiclass" if dataset in ("iris", "synth_multiclass") else dataset.split("_")[1])
    cfg = compose([f"dataset={dataset}", f"model={model[task]}", "dataset.n=50"]
                  if dataset.startswith("synth") else [f"dataset={dataset}",
                                                       f"model={model[task]}"])
    assert cfg.dataset.task == task


def test_overrides_reach_the_fields_with_their_types():
    cfg = compose(["reg=elasticnet", "reg.lam=1e-3", "reg.l1_ratio=0.3", "solver=sgd",
                   "solver.batch_size=64", "seed=7", "tracking.uri=sqlite:///x.db"])
    assert cfg.reg.lam == 1e-3 and cfg.reg.l1_ratio == 0.3 and cfg.seed == 7
    assert cfg.solver.batch_size == 64 and isinstance(cfg.solver.batch_size, int)
    assert cfgmod.solver_options(cfg.solver) == {"batch_size": 64, "variance_reduction": True}


def test_flatten_gives_dotted_params():
    flat = cfgmod.flatten(compose(["reg=l1", "reg.lam=0.5"]))
    assert flat["reg.name"] == "l1" and flat["reg.lam"] == 0.5
    assert flat["model.name"] == "logistic" and "tracking.experiment" in flat and "seed" in flat
    assert all(not isinstance(v, dict) for v in flat.values())


@pytest.mark.parametrize("override, words", [
    (["reg.lam=abc"], ["reg.lam", "abc", "Float"]),
    (["solver.max_iter=1.5"], ["solver.max_iter", "1.5", "Integer"]),
    (["solver.bogus=1"], ["bogus", "solver"]),
    (["model=perceptron"], ["perceptron", "linear", "logistic", "softmax"]),
    (["dataset=nope"], ["nope", "breast_cancer"]),
])
def test_bad_types_keys_and_options_fail_while_composing(override, words):
    with pytest.raises((HydraException, OmegaConfBaseException)) as err:
        compose(override)
    text = str(err.value) + str(err.value.__cause__)
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize("override, words", [
    (["model=logistic", "dataset=diabetes"], ["model=logistic", "diabetes", "linear"]),
    (["model=linear", "dataset=iris"], ["model=linear", "iris", "softmax"]),
    (["solver=lbfgs", "reg=l1"], ["solver='lbfgs'", "l1", "agd"]),
    (["solver=cd", "model=logistic", "reg=l1"], ["cd", "linear"]),
    (["reg.lam=-1"], ["reg.lam=-1", ">= 0"]),
    (["solver.tol=0"], ["solver.tol=0.0", "> 0"]),
    (["reg=elasticnet", "reg.l1_ratio=2"], ["reg.l1_ratio=2", "[0.0, 1.0]"]),
    (["dataset.test_size=0.5", "dataset.val_size=0.5"], ["val_size", "test_size"]),
    (["backend.dtype=float16"], ["backend.dtype", "float16", "float32"]),
    (["+solver.bogus=1"], ["solver.bogus", "not an option of solver=auto", "max_iter"]),
    (["solver=sgd", "+solver.momentum=0.9"], ["solver.momentum", "solver=sgd", "batch_size"]),
    (["+dataset.shuffle=true"], ["dataset.shuffle", "val_size"]),
    (["+verbose=1"], ["verbose", "is not a setting", "tracking"]),
    (["reg.lam=inf"], ["reg.lam=inf", "finite"]),
    (["reg.lam=nan"], ["reg.lam=nan", "finite"]),
    (["solver=sgd", "solver.batch_size=0"], ["solver.batch_size=0", ">= 1"]),
    (["solver=gd", "solver.step_rule=armijo"], ["solver.step_rule='armijo'", "backtracking"]),
    (["solver=newton", "solver.hessian_sample=0"], ["solver.hessian_sample=0", ">= 1"]),
    (["tracking.experiment="], ["tracking.experiment", "non-empty"]),
])
def test_impossible_values_and_combinations_name_field_value_and_allowed(override, words):
    with pytest.raises(cfgmod.ConfigError) as err:
        compose(override)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_load_accepts_a_plain_dict_and_picks_the_subclass_schemas():
    cfg, runtime = cfgmod.load({
        "dataset": {"name": "synth_binary", "source": "synthetic", "task": "binary", "n": 100},
        "model": {"name": "logistic"}, "reg": {"name": "l2", "lam": 0.1},
        "solver": {"name": "sgd", "batch_size": 16}, "backend": {}, "tracking": {}})
    assert isinstance(cfg.dataset, cfgmod.SyntheticDatasetConfig) and cfg.dataset.n == 100
    assert isinstance(cfg.solver, cfgmod.SGDConfig) and cfg.solver.batch_size == 16
    assert runtime.parent_run_id is None and "synth_binary" in runtime.config_yaml
    assert dataclasses.asdict(cfg)["reg"]["lam"] == 0.1


def test_a_parameter_without_effect_warns_once():
    from pipeline.solvers import IgnoredParameterWarning

    with pytest.warns(IgnoredParameterWarning, match="reg.l1_ratio=0.3 has no effect"):
        compose(["reg=l2", "reg.l1_ratio=0.3"])
    with pytest.warns(IgnoredParameterWarning, match="reg.lam=0.5 has no effect with reg=none"):
        compose(["reg=none", "reg.lam=0.5"])
