"""The run's figures, read back through matplotlib's objects (their data, not their pixels)
and as files (which exist, at a readable pixel size)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline import metrics, plots


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _texts_readable(fig) -> None:
    ax = fig.axes[0]
    assert ax.title.get_fontsize() >= 13
    assert ax.xaxis.label.get_fontsize() >= 12 and ax.yaxis.label.get_fontsize() >= 12
    ticks = ax.get_xticklabels() + ax.get_yticklabels()
    assert ticks and min(t.get_fontsize() for t in ticks) >= 10


def test_a_closed_form_objective_is_a_visible_point_and_a_curve_has_no_markers():
    one = plots.objective_figure([0.25])
    (line,) = one.axes[0].get_lines()
    assert line.get_marker() == "o" and list(line.get_ydata()) == [0.25]
    assert "closed form" in one.axes[0].get_title()
    _texts_readable(one)
    history = list(np.geomspace(10.0, 1e-3, 200))
    curve = plots.objective_figure(history)
    (line,) = curve.axes[0].get_lines()
    assert line.get_marker() in (None, "None", "") and len(line.get_ydata()) == 200
    assert curve.axes[0].get_yscale() == "log"  # four decades
    flat = plots.objective_figure([1.0, 0.9, 0.85])
    assert flat.axes[0].get_yscale() == "linear"  # less than a decade: log hides the change
    assert flat.axes[0].get_lines()[0].get_marker() == "o"  # few steps: each one visible


def test_coefficients_are_signed_and_ordered_by_size():
    rng = np.random.default_rng(3)
    w = rng.normal(size=45)
    names = [f"f{i}" for i in range(45)]
    fig = plots.coefficients_figure(w.reshape(-1, 1), names)
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda p: -p.get_y())  # top of the chart first
    widths = np.array([b.get_width() for b in bars])
    assert len(widths) == plots.TOP
    order = np.argsort(-np.abs(w))[:plots.TOP]
    np.testing.assert_array_equal(widths, w[order])  # signed, largest |w| at the top
    assert (widths < 0).any() and (widths > 0).any()
    at = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    shown = [at[b.get_y() + b.get_height() / 2] for b in bars]  # the label beside each bar
    assert shown == [names[i] for i in order]
    colours = {tuple(b.get_facecolor()) for b, v in zip(bars, widths, strict=True) if v < 0}
    assert len(colours) == 1 and colours != {tuple(bars[int(np.argmax(widths))].get_facecolor())}
    _texts_readable(fig)


def test_several_outputs_are_a_signed_heat_map_centred_at_zero():
    rng = np.random.default_rng(4)
    W = rng.normal(size=(12, 3))
    W[5, 1] = -9.0  # the largest weight, negative: first row
    fig = plots.coefficients_figure(W, [f"f{i}" for i in range(12)], ["a", "b", "c"],
                                    output_label="class")
    ax = fig.axes[0]
    (image,) = ax.get_images()
    shown = np.asarray(image.get_array())
    np.testing.assert_array_equal(shown, W[plots.coefficient_order(W)])
    assert ax.get_yticklabels()[0].get_text() == "f5" and shown[0, 1] == -9.0
    lo, hi = image.get_clim()
    assert lo == -hi == -9.0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_xlabel() == "class"


def test_the_roc_legend_carries_the_auc():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    score = y + rng.normal(scale=1.2, size=300)
    fig = plots.roc_figure(y, score)
    legend = fig.axes[0].get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0] == f"ROC, AUC = {metrics.roc_auc(y, score):.3f}"
    curve = fig.axes[0].get_lines()[0]
    assert curve.get_xdata()[0] == 0.0 and curve.get_ydata()[-1] == 1.0
    _texts_readable(fig)


def test_predicted_vs_true_names_its_r2():
    rng = np.random.default_rng(6)
    y = rng.normal(size=80)
    pred = y + rng.normal(scale=0.3, size=80)
    fig = plots.predicted_vs_true_figure(y, pred)
    legend = fig.axes[0].get_legend()
    r2 = metrics.regression(y, pred)["r2"]
    assert legend is not None and f"{r2:.3f}" in legend.get_texts()[0].get_text()


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_make_all_writes_the_tasks_figures_at_a_readable_size(tmp_path, task):
    rng = np.random.default_rng(7)
    m = {"binary": 1, "multiclass": 4, "regression": 1}[task]
    W = rng.normal(size=(8, m))
    y = rng.integers(0, 2 if task == "binary" else 4, 60)
    pred = y if task != "regression" else y + rng.normal(size=60)
    proba = np.column_stack([1 - y * 0.8, y * 0.8]) if task == "binary" else None
    labels = ["no", "yes"] if task == "binary" else ["a", "b", "c", "d"]
    paths = plots.make_all(task, [1.0, 0.5, 0.4], W, [f"f{i}" for i in range(8)],
                           y.astype(float) if task == "regression" else y, pred, proba, labels,
                           tmp_path / "plots")
    names = {p.name for p in paths}
    want = {"objective.png", "coefficients.png"} | {
        "binary": {"confusion_matrix.png", "roc.png"}, "multiclass": {"confusion_matrix.png"},
        "regression": {"predicted_vs_true.png"}}[task]
    assert names == want
    for path in paths:
        width, height = _png_size(path)
        assert width >= 600 and height >= 400, (path.name, width, height)


def test_dvc_plots_show_renders_offline(tmp_path):
    """``dvc plots show`` with the repository's config: vega inline from the shipped template,
    nothing the page would load from the network (its default page loads vega from a CDN)."""
    import re
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    dvc = [str(Path(sys.executable).with_name("dvc"))]
    template = REPO / ".dvc" / "plots" / "template.html"
    text = template.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text  # DVC adds no CDN tags
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=cli_env(), check=True)
    shutil.copy(REPO / ".dvc" / "config", tmp_path / ".dvc" / "config")
    (tmp_path / ".dvc" / "plots").mkdir()
    shutil.copy(template, tmp_path / ".dvc" / "plots" / "template.html")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(REPO / "plots", tmp_path / "plots")
    done = subprocess.run([*dvc, "plots", "show", "-o", "out"], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    page = (tmp_path / "out" / "index.html").read_text()
    attribute = r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)"""
    css = r"""url\(([^)]*)\)|@import\s+["']?([^"'\s;]+)"""
    loads = re.findall(f"{attribute}|{css}", page, re.IGNORECASE)
    remote = [u for group in loads for u in group if re.match(r"\s*(https?:)?//", u)]
    assert remote == [], remote[:5]
    assert "cdn." not in page
    for marker in ("/* vega 5.20.2 */", "/* vega-lite 5.2.0 */", "/* vega-embed 6.18.2 */"):
        assert marker in page
    import yaml

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    assert page.count("vegaEmbed('#") == len(declared) == 7  # one per plot of dvc.yaml
