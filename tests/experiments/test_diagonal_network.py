"""The diagonal linear network experiment: exact Hessian, the closed forms of 001 sec. 5.2, training,
and the qualitative finding (the rescaled trace ranks test loss better than the plain trace)."""
import math

import pytest
import torch

from sharpkit.analysis.diagonal_network import measure_taus
from sharpkit.cli import main
from sharpkit.experiments.diagonal_network import (
    DiagonalNetworkSettings,
    SparseRegression,
    diagonal_network_experiment,
    diagonal_network_hessian,
    diagonal_network_loss,
    diagonal_network_measures,
    train_diagonal_networks,
)


def _random_point(n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    return x, y, u, v


def test_hessian_equals_autograd_away_from_a_minimum():
    x, y, u, v = _random_point()
    d = u.numel()

    def loss(w):
        return diagonal_network_loss(x, y, w[:d], w[d:])

    reference = torch.autograd.functional.hessian(loss, torch.cat([u, v]))
    torch.testing.assert_close(diagonal_network_hessian(x, y, u, v), reference, rtol=1e-12, atol=1e-12)


def _whitened_minimum(d=4, seed=1):
    """n = 2d rows with (2/n) X^T X = I and labels fitted exactly: the setting of 001's closed forms."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * d
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
    x = q * math.sqrt(n / 2)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    return x, x @ (u * v), u, v


def test_measures_match_the_closed_forms_of_001_at_a_whitened_minimum():
    x, y, u, v = _whitened_minimum()
    beta = u * v
    m = diagonal_network_measures(x, y, u, v, beta_star=beta)
    assert m["train_loss"] < 1e-25 and m["test_loss"] == 0.0
    torch.testing.assert_close(m["trace"], float((u**2 + v**2).sum()))          # tr = sum u^2 + v^2
    torch.testing.assert_close(m["lambda_max"], float((u**2 + v**2).max()))     # lambda_max = max u^2 + v^2
    torch.testing.assert_close(m["rescaled_trace"], 2 * float(beta.abs().sum()))       # 2 ||beta||_1
    torch.testing.assert_close(m["rescaled_lambda_max"], 2 * float(beta.abs().max()))  # 2 ||beta||_inf
    torch.testing.assert_close(m["adaptive_trace"], 2 * float(beta.pow(2).sum()))      # c = |w|: 2 ||beta||_2^2


def test_rescaled_measures_are_invariant_and_plain_ones_are_not_under_alpha_reparametrisation():
    x, y, u, v = _random_point()
    beta_star = torch.zeros_like(u)
    before = diagonal_network_measures(x, y, u, v, beta_star)
    after = diagonal_network_measures(x, y, 3.0 * u, v / 3.0, beta_star)
    for name in ("rescaled_trace", "rescaled_lambda_max", "l1_norm", "train_loss", "test_loss"):
        assert after[name] == pytest.approx(before[name], rel=1e-9), name
    for name in ("trace", "lambda_max"):
        assert after[name] != pytest.approx(before[name], rel=1e-2), name


def test_gradient_descent_steps_follow_autograd_and_reach_the_target():
    x, y, beta = SparseRegression(n=30, d=40, seed=3).sample()
    g = torch.Generator().manual_seed(0)
    u0 = 0.1 * torch.randn(2, 40, generator=g, dtype=torch.float64)
    v0 = 0.1 * torch.randn(2, 40, generator=g, dtype=torch.float64)
    lr = torch.tensor([0.02, 0.05], dtype=torch.float64)
    u1, v1, _ = train_diagonal_networks(x, y, lr, u0, v0, target_loss=1e-30, max_steps=1)
    for i in range(2):
        w = torch.cat([u0[i], v0[i]]).requires_grad_()
        diagonal_network_loss(x, y, w[:40], w[40:]).backward()
        torch.testing.assert_close(torch.cat([u1[i], v1[i]]), (w - lr[i] * w.grad).detach())
    u, v, steps = train_diagonal_networks(x, y, lr, u0, v0, target_loss=1e-5, max_steps=50_000)
    assert (diagonal_network_loss(x, y, u, v) < 1e-5).all() and (steps < 50_000).all()


def test_sparse_regression_task_is_deterministic_and_sparse():
    x, y, beta = SparseRegression(n=20, d=50, sparsity=0.9, seed=4).sample()
    x2, y2, beta2 = SparseRegression(n=20, d=50, sparsity=0.9, seed=4).sample()
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(beta, beta2)
    assert int((beta != 0).sum()) == 5
    torch.testing.assert_close(y, x @ beta)
    with pytest.raises(ValueError, match="sparsity"):
        SparseRegression(sparsity=1.0)


def test_rescaled_trace_ranks_test_loss_better_than_the_plain_trace():
    """001's qualitative finding on a smaller grid than the book's (60 networks)."""
    frame = diagonal_network_experiment(settings=DiagonalNetworkSettings(networks=60, max_steps=20_000),
                                        progress=False)
    assert (frame["status"] == "ok").sum() >= 50
    taus = measure_taus(frame, n_boot=200)
    assert taus.loc["rescaled_trace", "tau"] > taus.loc["trace", "tau"] + 0.03
    assert taus.loc["rescaled_trace", "tau"] > 0.8


def test_cli_prints_both_taus_and_stores_the_networks(tmp_path, capsys):
    out = tmp_path / "diag.json"
    assert main(["diagonal-network", "--networks", "12", "--max-steps", "5000", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "rescaled_trace" in text and "\n  trace " in text
    import json
    record = json.loads(out.read_text())
    assert len(record["networks"]) == 12 and {t["measure"] for t in record["taus"]} >= {"trace", "rescaled_trace"}
    assert {"git", "versions", "hardware"} <= set(record["provenance"])


def test_the_printed_summary_and_the_stored_record_of_an_experiment(tmp_path):
    """What `sharpkit diagonal-network` prints and writes, read back by the book's reader."""
    import json

    import pandas as pd

    from sharpkit.analysis.diagonal_network import diagonal_record, diagonal_summary, read_diagonal_record

    frame = pd.DataFrame({"status": ["ok", "ok", "diverged"], "test_loss": [0.1, 0.2, float("nan")],
                          "trace": [1.0, 2.0, float("nan")]})
    frame.attrs.update(task={"n": 40, "seed": 0}, settings={"networks": 3})
    taus = pd.DataFrame({"tau": [0.25], "ci_low": [-0.5], "ci_high": [1.0]}, index=pd.Index(["trace"], name="measure"))
    assert diagonal_summary(frame, taus, 12.4) == [
        "3 networks (1 diverged, 2 ok) in 12 s; Kendall tau with the test loss over the 2 minima:",
        "  trace                tau = +0.250  [-0.500, +1.000]"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(diagonal_record(frame, taus, 12.4, {"host": "h"})))
    stored = read_diagonal_record(path)
    assert stored["task"] == {"n": 40, "seed": 0} and stored["wall_time_s"] == 12.4
    assert len(stored["networks"]) == 3 and list(stored["minima"]["test_loss"]) == [0.1, 0.2]
    pd.testing.assert_frame_equal(stored["taus"], taus)
    assert read_diagonal_record(tmp_path / "absent.json") is None
