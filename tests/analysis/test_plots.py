"""The book's figures: what each panel shows is derived from the frames, not typed."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sharpkit.analysis import plots  # noqa: E402


def test_tau_heatmap_lays_out_measures_by_evaluations_with_their_values():
    taus = pd.DataFrame({"measure": ["m1", "m1", "m2"], "evaluation": ["e1", "e2", "e1"], "n": [9, 9, 9],
                         "tau": [0.5, -0.25, 0.9], "p_value": [0.1] * 3, "ci_low": [0.1, -0.6, 0.7],
                         "ci_high": [0.8, 0.2, 1.0]})
    ax = plots.tau_heatmap(taus, {"m1": "Measure one"})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Measure one", "m2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["e1", "e2"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert "+0.50\n[+0.10, +0.80]" in texts and "n/a" in texts  # (m2, e2) has no value
    image = ax.images[0].get_array()
    assert image[0, 1] == -0.25 and np.ma.is_masked(image[1, 1])  # NaN cells are masked
    plt.close("all")


def test_sharpness_scatter_and_loss_curves_plot_every_model():
    runs = pd.DataFrame({"control": ["a", "a", "b"], "m": [1.0, 2.0, 30.0], "narrow": [1.0, 2.0, 3.0],
                         "err": [0.1, 0.2, 0.3]})
    fig = plots.sharpness_scatter(runs, ["m", "narrow", "absent"], "err", {"a": "red", "b": "blue"}, columns=3,
                                  title="cell")
    first = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in first.collections) == 3 and first.get_xscale() == "log"
    assert fig.axes[1].get_xscale() == "linear"  # within one decade
    assert not fig.axes[2].axison  # the unused panel is hidden
    assert fig.get_suptitle() == "cell"
    ax = plots.loss_curves({"a": [([-1, 0, 1], [3.0, 1.0, 2.0])]}, {"a": "red"})
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 0.0, 1.0])  # shifted to 0 at alpha = 0
    plt.close("all")


def all_texts(fig):
    texts = list(fig.findobj(matplotlib.text.Text))
    return [t for t in texts if t.get_text().strip()]


def assert_readable(fig):
    """At most the page column wide, every text at least 10 pt (so shown at natural size it reads at 10 pt)."""
    assert fig.get_figwidth() <= plots.WIDTH + 1e-9
    small = [(t.get_text(), t.get_fontsize()) for t in all_texts(fig) if t.get_fontsize() < plots.MIN_FONT]
    assert not small, small


def ratio_tables():
    from sharpkit.analysis.report import ResultsTable

    rows = []
    for control, value in (("baseline", 1.0), ("baseline_sam", 4.0), ("augmentation", 0.5)):
        for metric in ("test_accuracy", "sam_sharpness"):
            rows.append({"control": control, "metric": metric, "mean": value, "sem": 0.1, "n": 2, "bold": False})
    cells = pd.DataFrame(rows)
    table = ResultsTable("t", "resnet18", "cifar10", cells, ("baseline", "baseline_sam", "augmentation"),
                         ("test_accuracy", "sam_sharpness"))
    runs = pd.DataFrame({"control": ["baseline_sam", "baseline_sam"], "status": ["ok", "ok"],
                         "test_accuracy": [3.0, 5.0], "sam_sharpness": [4.0, 4.0]})
    return table, runs


def test_control_ratios_is_centred_at_one_with_seed_dots_and_the_paper():
    table, runs = ratio_tables()
    fig = plots.control_ratios(table, table, runs)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert ax.get_xscale() == "log" and low * high == pytest.approx(1.0)  # symmetric around 1 on a log axis
    assert high >= 5.0  # the farthest seed (5 / 1) is inside
    dots = [line for line in ax.lines if line.get_marker() == "."]
    assert sorted(x for line in dots for x in line.get_xdata()) == [3.0, 5.0]
    diamonds = [line for line in ax.lines if line.get_marker() == "D"]
    assert len(diamonds) == 2  # the paper's two non-baseline controls
    assert [t.get_text() for t in ax.get_yticklabels()] == ["baseline_sam", "augmentation"]
    assert_readable(fig)
    plt.close("all")


def test_paired_colours_give_each_sam_twin_the_hue_of_its_control():
    import matplotlib.colors as mcolors

    for plain in ("baseline", "augmentation", "weight_decay"):
        light, dark = (np.array(mcolors.to_rgb(plots.CONTROL_COLORS[c])) for c in (plain, f"{plain}_sam"))
        hue = [mcolors.rgb_to_hsv(c)[0] for c in (light, dark)]
        distance = abs(hue[0] - hue[1])
        assert min(distance, 1 - distance) < 0.08 and light.sum() > dark.sum()  # hue is an angle: red wraps


def test_findings_matrix_colours_each_cell_by_its_category():
    summary = pd.DataFrame({"claim": ["sam_raises"] * 2, "metric": ["sam_sharpness"] * 2, "scale": ["paper", "x"],
                            "cases": [9, 9], "holds": [9, 0], "category": ["holds", "reversed, significant"]})
    fig = plots.findings_matrix(summary, {"sam_raises": "SAM raises"}, {"x": "Scale x"})
    ax = fig.axes[0]
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == [plots.CATEGORY_COLORS["holds"], plots.CATEGORY_COLORS["reversed, significant"]]
    assert sorted(t.get_text() for t in ax.texts) == ["0/9", "9/9"]
    assert_readable(fig)
    plt.close("all")


def test_every_figure_of_the_book_is_readable():
    runs = pd.DataFrame({"control": ["baseline", "baseline_sam", "fam"], "m": [1.0, 2.0, 30.0],
                         "err": [0.1, 0.2, 0.3]})
    taus = pd.DataFrame({"measure": ["m1"], "evaluation": ["e1"], "n": [9], "tau": [0.5], "p_value": [0.1],
                         "ci_low": [0.1], "ci_high": [0.8]})
    curves = {"baseline": [([-1, 0, 1], [3.0, 1.0, 2.0])], "fam": [([-1, 0, 1], [2.0, 1.0, 2.0])]}
    minima = pd.DataFrame({m: [1.0, 2.0] for m in ("trace", "rescaled_trace", "lambda_max", "rescaled_lambda_max",
                                                   "test_loss")} | {"balance": [1.0, 2.0]})
    diagonal_taus = pd.DataFrame({"tau": [0.1, 0.2, 0.3, 0.4]},
                                 index=["trace", "rescaled_trace", "lambda_max", "rescaled_lambda_max"])
    for fig in (plots.sharpness_scatter(runs, ["m"], "err", title="t"), plots.tau_heatmap(taus).figure,
                plots.loss_curve_grid(curves, title="t"), plots.diagonal_scatter(minima, diagonal_taus)):
        assert_readable(fig)
    plt.close("all")
