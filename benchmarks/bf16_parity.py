"""Does bfloat16 training change what a profile finds? Final test accuracy of bf16- and float32-trained
Baselines, paired by seed (same initial weights, same data order, same everything but the precision).

For each architecture of the profile and each seed, the Baseline run of the profile is trained as it is
(bf16 autocast when the profile says so) and again with the other precision; the float32 and bf16 test
accuracies are compared as paired differences against the seed-to-seed spread. A bf16 run already stored
in ``results/<profile>`` by the sweep (same config, same run id) is read instead of retrained.

Prints, per architecture: each seed's pair, the mean paired difference with its standard error and a
two-sided 95% t interval (whether it holds 0), and that difference in units of the standard deviation over
seeds of the float32 accuracies (seed noise).

Usage: python benchmarks/bf16_parity.py [--profile cifar10-minima] [--seeds 0 1 2] [--jobs 2] [--work DIR]
       (--only fp32 --work DIR first, beside a running sweep, then the comparison once it stored the bf16 runs)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
from pathlib import Path

from scipy import stats

from sharpkit.experiments.layout import StoreLayout
from sharpkit.experiments.profiles import get_profile
from sharpkit.run.checkpoint import RESULT_FILE
from sharpkit.run.train import train
from sharpkit.utils.parallel import process_map

REPO = Path(__file__).resolve().parents[1]


def trained(job: tuple) -> dict:
    import torch

    profile_name, arch, seed, bf16, work, threads = job
    if threads:
        torch.set_num_threads(threads)
    profile = get_profile(profile_name)
    spec = next(s for s in profile.runs()
                if (s.config.arch, s.config.control, s.config.seed) == (arch, "baseline", seed))
    config = dataclasses.replace(spec.config, bf16=bf16)
    stored = StoreLayout.of(REPO / "results", profile.name).result_file(spec.run_id)
    if config == spec.config and stored.exists():
        record = json.loads(stored.read_text())
        source = f"results/{profile.name}/runs/{spec.run_id}"
    else:
        out = Path(work) / spec.run_id / ("bf16" if bf16 else "fp32")
        # A finished training in the work folder is read back, not retrained (train() resumes).
        train(config, out, init_dir=Path(work) / "init", progress=False, device="cpu")
        record = json.loads((out / RESULT_FILE).read_text())
        source = str(out)
    metrics = record["metrics"]
    row = {"arch": arch, "seed": seed, "dtype": "bf16" if bf16 else "fp32", "test_accuracy": metrics["test_accuracy"],
           "train_eval_accuracy": metrics.get("train_eval_accuracy"), "source": source}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cifar10-minima")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--archs", nargs="+")
    parser.add_argument("--jobs", type=int, default=2, help="trainings in parallel, one thread each")
    parser.add_argument("--work", help="keep the trainings here (default: a temporary folder); a rerun with the "
                                       "same folder reads them back")
    parser.add_argument("--only", choices=["fp32", "bf16"], help="only train this precision (fill --work)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    archs = [e.arch for e in profile.experiments if not args.archs or e.arch in args.archs]
    precisions = [p == "bf16" for p in ([args.only] if args.only else ["fp32", "bf16"])]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp
        # Threads as the sweep's workers: one each (set explicitly, whatever --jobs).
        jobs = [(profile.name, arch, seed, bf16, work, 1)
                for bf16 in precisions for arch in archs for seed in args.seeds]
        rows = process_map(trained, jobs, args.jobs)
    if args.only:
        print(f"trained the {args.only} Baselines into {work}; run again without --only for the comparison")
        return
    print(f"profile={profile.name}, Baseline, seeds {args.seeds}: test accuracy, float32 vs bf16 (paired by seed)")
    for arch in archs:
        acc = {(r["seed"], r["dtype"]): r["test_accuracy"] for r in rows if r["arch"] == arch}
        diffs = [acc[s, "bf16"] - acc[s, "fp32"] for s in args.seeds]
        fp32 = [acc[s, "fp32"] for s in args.seeds]
        mean = statistics.fmean(diffs)
        sem = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        half = stats.t.ppf(0.975, len(diffs) - 1) * sem if len(diffs) > 1 else float("nan")
        pairs = ", ".join(f"seed {s}: {acc[s, 'fp32']:.4f} / {acc[s, 'bf16']:.4f}" for s in args.seeds)
        noise = statistics.stdev(fp32) if len(fp32) > 1 else float("nan")
        print(f"{arch:9s} {pairs}")
        verdict = ("no detectable difference (the interval holds 0)" if mean - half <= 0 <= mean + half
                   else "a difference (the interval excludes 0)")
        print(f"{'':9s} bf16 - fp32 = {mean:+.4f} +- {sem:.4f} (SEM), 95% CI [{mean - half:+.4f}, {mean + half:+.4f}]: "
              f"{verdict}; |mean difference| = {abs(mean) / noise:.1f} x the seed std of fp32 ({noise:.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
