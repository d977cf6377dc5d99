"""The app's search group: search=cv and search=path make one run with the curves and plots."""

import numpy as np
import pytest

from pipeline import config as cfgmod
from pipeline import search
from tests.conftest import compose, runs_of


def test_search_cv_makes_one_finished_run_with_curves_plots_and_a_servable_model(cli, store):
    import mlflow
    from mlflow.tracking import MlflowClient

    res = cli("model=logistic", "reg=l1", "search=cv", "search.n_lams=12", "search.folds=3",
              "search.select=1se", f"tracking.uri={store}")
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = runs_of(store)
    assert run.info.status == "FINISHED" and run.info.run_name == "logistic-l1-cv-breast_cancer"
    m, p = run.data.metrics, run.data.params
    assert p["search.name"] == "cv" and float(p["search.chosen_lam"]) == m["search/chosen_lam"]
    assert m["search/lam_1se"] >= m["search/lam_min"] and m["search/chosen_lam"] == m[
        "search/lam_1se"]
    client = MlflowClient(store)
    curve = client.get_metric_history(run.info.run_id, "search/deviance")
    lams = client.get_metric_history(run.info.run_id, "search/lam")
    assert [c.step for c in curve] == list(range(12)) and len(lams) == 12
    assert np.all(np.diff([c.value for c in sorted(lams, key=lambda c: c.step)]) < 0)
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/search_path.png", "plots/search_score.png"} <= plots
    assert m["test/accuracy"] > 0.9
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    assert model.metadata.signature is not None
    assert "chosen by search=cv" in res.stdout


@pytest.mark.parametrize("overrides, words", [
    (["search=cv", "reg=none"], ["search=cv chooses lambda", "reg=none"]),
    (["search=cv", "search.folds=1"], ["search.folds=1"]),
    (["search=path", "search.select=1se"], ["search=cv"]),
    (["search=cv", "search.scoring=mse"], ["search.scoring='mse'"]),
    (["search=path", "dataset.val_size=0"], ["dataset.val_size"]),
])
def test_bad_searches_are_config_errors(overrides, words):
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(compose(overrides))
    for w in words:
        assert w in str(err.value)


def test_search_path_chooses_the_best_validation_score():
    config, _ = cfgmod.load(compose(["model=softmax", "dataset=wine", "reg=l1", "search=path",
                                     "search.n_lams=10", "search.scoring=accuracy"]))
    from pipeline import data as datamod

    data = datamod.load(config.dataset, config.model.name, config.seed)
    fit = search.run(config, data)
    rec = fit.search
    assert rec.kind == "path" and rec.lam == rec.lams[int(np.argmax(rec.score))]
    assert fit.lam == rec.lam and len(search.curves(rec)) == 10


def test_the_app_returns_the_validation_loss_a_sweeper_minimises(store, tmp_path):
    """``hydra/sweeper=optuna`` minimises what ``python -m pipeline`` returns: the validation
    split's loss of the run, a metric the run logged."""
    from pipeline import run
    from pipeline.__main__ import SWEEP_METRIC, sweep_objective
    from pipeline.config import Runtime

    config = compose(["model=logistic", "reg=l1", "reg.lam=0.01", f"tracking.uri={store}",
                      "tracking.progress=false", "tracking.log_model=false",
                      "tracking.log_plots=false"])
    res = run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)
    value = sweep_objective(res.metrics, res.data.task)
    assert isinstance(value, float) and value == res.metrics[SWEEP_METRIC[res.data.task]] > 0
    assert sweep_objective({}, "binary") is None
