"""The micro profile the sweep tests run (2 controls x 2 seeds of a tiny ViT on digits, seconds per run), and
what two sweeps' records must share."""
import json
from pathlib import Path

MICRO_SOURCE = """
from sharpkit.run.evaluate import EvalSettings
from sharpkit.experiments.profiles import Experiment, Profile

def micro_profile(lr=0.05):
    evaluation = EvalSettings(sam_samples=2, corruption_subset=8, batch_size=32)
    train = {"epochs": 2, "train_subset": 64, "test_subset": 32, "batch_size": 32, "lr": lr}
    size = {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 16}
    return Profile("micro", 1, "test profile", (Experiment("digits", "vit", size, train, evaluation),),
                   controls=("baseline", "baseline_sam"), seeds=(0, 1))
"""
namespace: dict = {}
exec(MICRO_SOURCE, namespace)
micro_profile = namespace["micro_profile"]

VOLATILE = {"provenance", "wall_time_s", "run_wall_time_s", "eval_wall_time_s", "started", "finished", "log"}


def stable(record):
    """A run record without timings and provenance (which legitimately differ between sweeps)."""
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["evaluation"] = {k: v for k, v in record["evaluation"].items() if k != "provenance"}
    out["log"] = [{k: v for k, v in e.items() if "seconds" not in k} for e in record["log"]]
    return out


def records(root):
    return {p.parent.name: stable(json.loads(p.read_text()))
            for p in sorted(Path(root).glob("micro/runs/*/result.json"))}
