"""Training reuse: a run with the config of a finished training in the cache starts from a copy of it, only on
the same arithmetic, and survives a crash after the copy."""
import json
from pathlib import Path

from sharpkit.experiments.sweep import dry_run, sweep

from ._micro import micro_profile, stable

REPO = Path(__file__).resolve().parents[2]


def test_a_profile_that_only_measures_more_reuses_the_training_and_matches_a_fresh_run(reference, tmp_path,
                                                                                      monkeypatch):
    """A second profile with the same training and another evaluation takes the finished checkpoints from
    the cache instead of training again, and its records equal those of a sweep that trained from scratch."""
    import dataclasses
    import shutil

    import torch

    base = micro_profile()
    experiment = base.experiments[0]
    measured_more = dataclasses.replace(
        base, name="micro-more",
        experiments=(dataclasses.replace(experiment, evaluation=dataclasses.replace(
            experiment.evaluation, sam_samples=3, metrics=experiment.evaluation.metrics + ("hessian_trace",),
            beyond_points=16, hessian_samples=2)),))
    shared_cache = tmp_path / "shared-cache"
    shutil.copytree(reference.parent / "cache", shared_cache)
    quiet = {"progress": False, "log": lambda *_: None}
    planned: list[str] = []
    assert dry_run(measured_more, measure=False, cache_dir=shared_cache, log=planned.append)["reusable"] == 4
    assert any("4 of the 4 runs will reuse a finished training" in line for line in planned)
    assert dry_run(measured_more, measure=False, cache_dir=tmp_path / "empty", log=planned.append)["reusable"] == 0
    # a profile's own finished runs are not "reuse" (they are resumed, or skipped when stored)
    assert dry_run(base, measure=False, cache_dir=shared_cache, log=planned.append)["reusable"] == 0
    # workers with another thread count than the trainings' would train again
    assert dry_run(measured_more, measure=False, cache_dir=shared_cache, workers=2, threads=torch.get_num_threads() + 1,
                   results_root=tmp_path / "none", log=planned.append)["reusable"] == 0
    # planning a GPU sweep on a machine without one: no count, no error
    if not torch.cuda.is_available():
        assert dry_run(measured_more, measure=False, device="cuda", cache_dir=shared_cache,
                       log=planned.append)["reusable"] == 0
    sweep(measured_more, tmp_path / "reused", cache_dir=shared_cache, **quiet)
    sweep(measured_more, tmp_path / "fresh", cache_dir=tmp_path / "fresh-cache", **quiet)

    def records(root):
        return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("micro-more/runs/*/result.json"))}

    reused, fresh, trained = records(tmp_path / "reused"), records(tmp_path / "fresh"), {
        p.parent.name: json.loads(p.read_text()) for p in reference.glob("micro/runs/*/result.json")}
    assert reused.keys() == fresh.keys() and len(reused) == 4
    by_config = {r["config_hash"]: r for r in trained.values()}
    for run_id, record in reused.items():
        source = by_config[record["config_hash"]]
        # the log (with its per-epoch seconds) is the original training's: nothing was trained again
        assert record["log"] == source["log"]
        assert record["training_reused_from"]["provenance"] == source["provenance"]
        assert "training_reused_from" not in fresh[run_id]
        assert stable(record) == stable(fresh[run_id]) | {"training_reused_from": record["training_reused_from"]}


def test_reuse_needs_the_same_config_and_arithmetic_and_survives_a_crash_after_the_copy(reference, tmp_path):
    import torch

    from sharpkit.experiments.sweep import REUSED_FROM, reuse_training, run_one

    roots = [reference.parent / "cache" / "work"]
    spec = micro_profile().runs()[0]
    cpu = torch.device("cpu")
    # another learning rate is another training
    other = micro_profile(lr=0.1).runs()[0]
    assert reuse_training(other.config, roots, tmp_path / "other", cpu) is None
    assert not (tmp_path / "other").exists()
    previous = torch.get_num_threads()
    try:
        # the same config trained with another thread count rounds differently: not reused either (the
        # reference sweep ran its runs at the default 1 thread)
        torch.set_num_threads(2)
        assert reuse_training(spec.config, roots, tmp_path / "threads", cpu) is None
        torch.set_num_threads(1)
        # a crash after the copy and before the record: the rerun still says where the training came from
        cache = tmp_path / "cache"
        work = cache / "work" / spec.run_id
        origin = reuse_training(spec.config, roots, work, cpu)
        assert origin is not None and (work / "checkpoint.pt").exists() and (work / REUSED_FROM).exists()
        data = {"profile": "micro", "config": spec.config.to_dict(), "evaluation": spec.evaluation.to_dict()}
        assert run_one(data, str(tmp_path / "results"), str(cache), 1, device="cpu") == "ok"
    finally:
        torch.set_num_threads(previous)
    record = json.loads((tmp_path / "results" / "micro" / "runs" / spec.run_id / "result.json").read_text())
    stored = json.loads((reference / "micro" / "runs" / spec.run_id / "result.json").read_text())
    assert record["training_reused_from"]["provenance"] == stored["provenance"]
    assert stable(record) == stable(stored) | {"training_reused_from": record["training_reused_from"]}


def test_trainings_are_looked_for_in_every_default_profile_cache_but_only_in_an_explicit_one(tmp_path, monkeypatch):
    from sharpkit.experiments.reuse import search_roots

    monkeypatch.setenv("SHARPKIT_CACHE", str(tmp_path / "runs"))
    for name in ("cifar10-mini", "beyond-cifar10", "smoke"):
        (tmp_path / "runs" / name / "work").mkdir(parents=True)
    own = tmp_path / "runs" / "beyond-cifar10"
    assert search_roots(own) == [own / "work", tmp_path / "runs" / "cifar10-mini" / "work",
                                tmp_path / "runs" / "smoke" / "work"]
    explicit = tmp_path / "elsewhere" / "mine"
    assert search_roots(explicit) == [explicit / "work"]
