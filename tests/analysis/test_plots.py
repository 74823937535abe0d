"""The book's figures: what each panel shows is derived from the frames, not typed."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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
