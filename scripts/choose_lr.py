"""Choose a profile's learning rate the way we state it in the book: train the Baseline control of a seed
outside the grid (99) on the profile's training subset minus a held-out slice, for each candidate rate,
and keep the rate with the best held-out accuracy. The test set is never looked at. The chosen rate is then
used, unchanged, by every control, as the paper does.

Usage: python scripts/choose_lr.py --profile cifar10-mini [--rates 0.005 0.01 0.02 0.05 0.1] [--out FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from sharpkit.data import ImageDataset, load_dataset, subset_indices
from sharpkit.profiles import get_profile
from sharpkit.train import train


def held_out_split(data: ImageDataset, train_subset: int | None, held_out: int) -> ImageDataset:
    idx = subset_indices(len(data.y_train), train_subset)
    fit, val = idx[:-held_out], idx[-held_out:]
    return ImageDataset(f"{data.name}[held-out]", data.x_train[fit], data.y_train[fit], data.x_train[val],
                        data.y_train[val], data.classes, data.mean, data.std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for exp in profile.experiments:
            base = exp.config("baseline", 99)
            data = held_out_split(load_dataset(base.dataset), base.train_subset, args.held_out)
            for rate in args.rates:
                config = dataclasses.replace(base, lr=rate, train_subset=None, test_subset=None)
                result = train(config, Path(tmp) / f"{exp.arch}-{rate}", dataset=data, progress=False,
                               init_dir=Path(tmp) / "init")
                log = [json.loads(line) for line in (result.out_dir / "log.jsonl").read_text().splitlines()]
                row = {"arch": exp.arch, "lr": rate, "status": result.status,
                       "held_out_accuracy": result.metrics.get("test_accuracy"),
                       "seconds_per_epoch": sum(e.get("train_seconds", 0) for e in log) / max(len(log), 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    # One rate for the whole profile (the paper uses one rate per dataset for every arch and control):
    # the best mean held-out accuracy over archs; a rate at which any arch diverged is out.
    mean_accuracy = {}
    for rate in args.rates:
        at_rate = [r for r in rows if r["lr"] == rate]
        if all(r["status"] == "ok" for r in at_rate):
            mean_accuracy[rate] = sum(r["held_out_accuracy"] for r in at_rate) / len(at_rate)
    chosen = max(mean_accuracy, key=mean_accuracy.get)
    print("mean held-out accuracy per rate:", {k: round(v, 4) for k, v in mean_accuracy.items()})
    print(f"chosen lr: {chosen}")
    if args.out:
        Path(args.out).write_text(json.dumps({"profile": profile.name, "rates": args.rates, "rows": rows,
                                              "mean_held_out_accuracy": mean_accuracy, "chosen": chosen},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
