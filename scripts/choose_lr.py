"""Choose a profile's learning rate the way we state it in the book: train the Baseline control of a seed
outside the grid (99) on the profile's training subset minus a held-out slice, for each candidate rate,
and keep the rate with the best held-out accuracy. The test set is never looked at. The chosen rate is then
used, unchanged, by every control, as the paper does.

Two rules:
- ``--per-profile`` (default): one rate for the whole profile, the best mean held-out accuracy over archs
  (the paper uses one rate per dataset for every arch and control);
- ``--per-arch``: one rate per architecture; with ``--target-train-accuracy T`` only rates whose probe ends
  with eval-mode training accuracy >= T on its fitting images count (a profile of minima must fit).
A rate at which a probe diverged is out.

Usage: python scripts/choose_lr.py --profile cifar10-mini [--rates 0.005 0.01 0.02 0.05 0.1] [--out FILE]
       python scripts/choose_lr.py --profile cifar10-minima --per-arch --target-train-accuracy 0.99 --jobs 2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from sharpkit.data import ImageDataset, load_dataset, subset_indices
from sharpkit.experiments.profiles import get_profile
from sharpkit.run.checkpoint import read_log
from sharpkit.run.train import train
from sharpkit.utils.parallel import process_map


def held_out_split(data: ImageDataset, train_subset: int | None, held_out: int) -> ImageDataset:
    idx = subset_indices(len(data.y_train), train_subset)
    fit, val = idx[:-held_out], idx[-held_out:]
    return ImageDataset(f"{data.name}[held-out]", data.x_train[fit], data.y_train[fit], data.x_train[val],
                        data.y_train[val], data.classes, data.mean, data.std)


def probe(job: tuple) -> dict:
    """Train one (arch, rate) Baseline probe; returns its row. Runs in a worker process (one thread each, as
    the sweep's workers) or inline."""
    import torch

    profile_name, arch, control, rate, held_out, tmp, threads = job
    if threads:
        torch.set_num_threads(threads)
    exp = next(e for e in get_profile(profile_name).experiments if e.arch == arch)
    base = exp.config(control, 99)
    data = held_out_split(load_dataset(base.dataset), base.train_subset, held_out)
    config = dataclasses.replace(base, lr=rate, train_subset=None, test_subset=None)
    result = train(config, Path(tmp) / f"{arch}-{control}-{rate}", dataset=data, progress=False,
                   init_dir=Path(tmp) / "init")
    log = read_log(result.out_dir)
    row = {"arch": arch, "control": control, "lr": rate, "status": result.status, "epochs": config.epochs,
           "held_out_accuracy": result.metrics.get("test_accuracy"),
           "train_eval_accuracy": result.metrics.get("train_eval_accuracy"),
           "train_eval_loss": result.metrics.get("train_eval_loss"),
           "seconds_per_epoch": sum(e.get("train_seconds", 0) for e in log) / max(len(log), 1)}
    print(json.dumps(row), flush=True)
    return row


def baseline_rows(rows: list[dict]) -> list[dict]:
    """The rows the choice is made on (other controls' probes only check that they fit too)."""
    return [r for r in rows if r.get("control", "baseline") == "baseline"]


def choose_per_profile(rows: list[dict], rates: list[float]) -> tuple[float, dict[float, float]]:
    mean_accuracy = {}
    for rate in rates:
        at_rate = [r for r in rows if r["lr"] == rate]
        if all(r["status"] == "ok" for r in at_rate):
            mean_accuracy[rate] = sum(r["held_out_accuracy"] for r in at_rate) / len(at_rate)
    if not mean_accuracy:
        raise SystemExit("every candidate rate diverged for some arch: try smaller --rates")
    return max(mean_accuracy, key=mean_accuracy.get), mean_accuracy


def choose_per_arch(rows: list[dict], target: float | None) -> dict[str, float]:
    chosen = {}
    for arch in dict.fromkeys(r["arch"] for r in rows):
        ok = [r for r in rows if r["arch"] == arch and r["status"] == "ok"]
        fits = [r for r in ok if target is None or (r["train_eval_accuracy"] or 0.0) >= target]
        if not fits:
            raise SystemExit(f"{arch}: no rate reached eval-mode training accuracy {target} (best "
                             f"{max((r['train_eval_accuracy'] or 0.0) for r in ok) if ok else 'none'}): "
                             "more epochs or other --rates")
        chosen[arch] = max(fits, key=lambda r: r["held_out_accuracy"])["lr"]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--per-arch", action="store_true", help="one rate per architecture")
    parser.add_argument("--target-train-accuracy", type=float, help="with --per-arch: only rates that fit")
    parser.add_argument("--jobs", type=int, default=1, help="probes in parallel (one thread each when > 1)")
    parser.add_argument("--archs", nargs="+", help="only these architectures of the profile")
    parser.add_argument("--controls", nargs="+", default=["baseline"],
                        help="controls to probe; the choice is made on the Baseline, the others check that they "
                             "fit at the same rates (without baseline: a check only, no choice)")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(profile.name, exp.arch, control, rate, args.held_out, tmp, 1 if args.jobs > 1 else None)
                for exp in profile.experiments if not args.archs or exp.arch in args.archs
                for control in args.controls for rate in args.rates]
        rows = process_map(probe, jobs, args.jobs)
    record = {"profile": profile.name, "rates": args.rates, "held_out": args.held_out, "rows": rows}
    if args.out:  # the probes are kept even when no rate qualifies
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    if "baseline" not in args.controls:
        return
    if args.per_arch:
        chosen = choose_per_arch(baseline_rows(rows), args.target_train_accuracy)
        record.update(rule="per-arch", target_train_accuracy=args.target_train_accuracy, chosen=chosen)
    else:
        best, mean_accuracy = choose_per_profile(baseline_rows(rows), args.rates)
        print("mean held-out accuracy per rate:", {k: round(v, 4) for k, v in mean_accuracy.items()})
        record.update(mean_held_out_accuracy=mean_accuracy, chosen=best)
        chosen = best
    print(f"chosen lr: {chosen}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
