"""sharpkit.analysis.measures: evaluations written as errors, and the stored loss curves by control."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sharpkit.analysis.measures import asymmetry_curves, with_errors


def test_with_errors_orients_every_evaluation_as_lower_is_better():
    frame = pd.DataFrame({"test_accuracy": [0.9, 0.5], "corruption_accuracy": [70.0, 40.0]})
    out = with_errors(frame)
    np.testing.assert_allclose(out["test_error"], [0.1, 0.5])
    np.testing.assert_allclose(out["corruption_error"], [30.0, 60.0])
    assert "test_accuracy" in out and "test_error" not in frame  # the input is left alone
    assert "corruption_error" not in with_errors(pd.DataFrame({"test_accuracy": [0.5]}))


def test_asymmetry_curves_groups_the_stored_curves_by_control(tmp_path):
    import json

    stored = {"r1": ("baseline", [-1.0, 0.0, 1.0], [0.3, 0.0, 0.1]), "r2": ("fam", [-1.0, 0.0, 1.0], [0.2, 0.0, 0.2]),
              "r3": ("baseline", [-1.0, 0.0, 1.0], [0.5, 0.0, 0.4]), "r4": ("fam", None, None)}
    for run_id, (_control, alphas, losses) in stored.items():
        details = {} if alphas is None else {"asymmetry_factor": {"curve_alphas": alphas, "curve_losses": losses}}
        folder = tmp_path / "prof" / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"evaluation": {"details": details}}))
    runs = pd.DataFrame({"run_id": list(stored), "control": [v[0] for v in stored.values()]})
    curves = asymmetry_curves(tmp_path, "prof", runs)
    assert curves == {"baseline": [(stored["r1"][1], stored["r1"][2]), (stored["r3"][1], stored["r3"][2])],
                      "fam": [(stored["r2"][1], stored["r2"][2])]}  # r4 was measured without it
    with pytest.raises(ValueError, match="run_id"):
        asymmetry_curves(tmp_path, "prof", pd.DataFrame({"control": ["fam"]}))
