"""The ``sharpkit`` command line."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from .run.controls import CONTROLS, RECIPES, recipe_for
from .utils.locks import BusyError

if TYPE_CHECKING:
    from .run.config import TrainConfig


def _parse_size(items: list[str]) -> dict[str, Any]:
    size: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"sharpkit: --size expects KEY=VALUE (e.g. --size depth=4), got {item!r}.")
        key, value = item.split("=", 1)
        try:
            size[key] = json.loads(value)
        except json.JSONDecodeError:
            size[key] = value
    return size


def _positive_float(text: str) -> float:
    """argparse type of a rate: a finite number above 0 (``float`` alone takes "inf" and "nan")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number larger than 0 (e.g. 0.01), but got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    """argparse type of a coefficient that may be 0: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number at least 0 (e.g. 5e-4), but got {text!r}")
    return value


def _momentum(text: str) -> float:
    """argparse type of SGD's momentum: a number in [0, 1) (1 and above never forget a gradient: no descent)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) (e.g. 0.9), but got {text!r}")
    return value


def _add_import(p: argparse.ArgumentParser, workers: bool = False) -> None:
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (a module name, or the path of a .py file; repeatable), so that the "
                        "models and datasets it registers (sharpkit.models.register_model, "
                        "sharpkit.data.register_dataset) can be named"
                        + (", in the worker processes too" if workers else "")
                        + "; $SHARPKIT_IMPORT names more, and the sharpkit.models and sharpkit.plugins entry "
                          "points of installed packages are always imported")


def _defaults(values: dict[str, Any], otherwise: Any = None) -> str:
    """A help text's default that depends on the control or the dataset: ``"0.5 for asam, average_sam; 0.05
    otherwise"`` from name -> value (the names holding ``otherwise`` are summed up by the word)."""
    by_value: dict[Any, list[str]] = {}
    for name, value in values.items():
        if value != otherwise:
            by_value.setdefault(value, []).append(name)
    parts = [f"{value:g}" if isinstance(value, float) else f"{value}" for value in by_value]
    text = "; ".join(f"{part} for {', '.join(names)}" for part, names in zip(parts, by_value.values()))
    if otherwise is None:
        return text
    rest = f"{otherwise:g}" if isinstance(otherwise, float) else f"{otherwise}"
    return f"{text}; {rest} otherwise" if text else rest


def _sam_rho(control) -> float:
    """A SAM control's radius: its own, else the recipe's (every dataset's recipe has the same)."""
    return recipe_for("cifar10").sam_rho if control.sam_rho is None else control.sam_rho


def _recipe_default(field: str) -> str:
    """A recipe field's default per dataset; other datasets take the cifar10 recipe's (recipe_for)."""
    return _defaults({name: getattr(r, field) for name, r in RECIPES.items()}, getattr(recipe_for("other"), field))


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .data.loader import AUGMENTATIONS
    from .run.config import SCHEDULERS

    p = sub.add_parser("train", help="train one (arch, dataset, control, seed) run",
                       description="Train one run of the paper's protocol; resumes if --out holds a checkpoint. "
                                   "The control chooses the regularisers and the dataset the recipe; the flags "
                                   "below override single settings of either.")
    p.add_argument("--arch", required=True, help="model name (see `sharpkit models`; your own: see --import)")
    p.add_argument("--dataset", required=True,
                   help="dataset name: cifar10, cifar100, tinyimagenet, digits, npz:PATH (a relative PATH is stored "
                        "absolute, so the run evaluates from any directory) or one an --import module registers")
    p.add_argument("--control", required=True, choices=sorted(CONTROLS), help="training control")
    p.add_argument("--seed", type=int, required=True, help="run seed (init weights and data order)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log.jsonl, result.json)")
    p.add_argument("--epochs", type=int, help="epochs (default: the dataset recipe's, 100)")
    p.add_argument("--batch-size", type=int, help="batch size (default 256)")
    p.add_argument("--lr", type=_positive_float, help="learning rate (default: the dataset recipe's)")
    p.add_argument("--train-subset", type=int, help="train on a fixed random subset of N images")
    p.add_argument("--test-subset", type=int, help="evaluate on a fixed random subset of N test images")
    p.add_argument("--width", type=int, help="model width knob (resnet18/vgg19 base channels, vit dim)")
    p.add_argument("--size", action="append", default=[], metavar="KEY=VALUE",
                   help="other model size knobs, e.g. --size depth=4 (repeatable)")
    p.add_argument("--rho", dest="sam_rho", type=_positive_float, metavar="RHO",
                   help="SAM's neighbourhood radius: the L2 norm of the weight perturbation, in the weights' own "
                        "units (ASAM: relative to |w|); only for controls that train with SAM (default: the "
                        f"control's: {_defaults({n: _sam_rho(c) for n, c in CONTROLS.items() if c.sam})})")
    p.add_argument("--weight-decay", type=_non_negative_float, metavar="LAMBDA",
                   help="coupled L2 coefficient (SGD's weight_decay: LAMBDA * w is added to every parameter's "
                        "gradient, per step), dimensionless (default: the control's: "
                        f"{_defaults({n: c.weight_decay for n, c in CONTROLS.items()}, 0.0)})")
    p.add_argument("--momentum", type=_momentum, metavar="BETA",
                   help=f"SGD momentum coefficient, dimensionless, in [0, 1) (default: the dataset recipe's: "
                        f"{_recipe_default('momentum')})")
    p.add_argument("--scheduler", choices=SCHEDULERS,
                   help="learning-rate schedule: none (constant --lr) or cosine (CosineAnnealingLR from --lr to 0 "
                        f"over the epochs) (default: the dataset recipe's: {_recipe_default('scheduler')})")
    p.add_argument("--scheduler-step", choices=["epoch", "batch"],
                   help=f"when a cosine schedule steps (default: the dataset recipe's: "
                        f"{_recipe_default('scheduler_step')})")
    p.add_argument("--augmentation", choices=AUGMENTATIONS,
                   help="training-data augmentation: none, crop_flip (random crop of the 4-pixel padded image and "
                        "horizontal flip, CIFAR's) or resized_crop_flip (RandomResizedCrop and flip, "
                        "TinyImageNet's) (default: the control's: the protocol's for the dataset under the "
                        "augmentation controls, none otherwise)")
    p.add_argument("--reproduce-wd-sam-bug", action="store_true",
                   help="train CIFAR-10 weight_decay_sam without SAM, as the authors' script did")
    p.add_argument("--data-root", help="dataset root (default: $SHARPKIT_DATA, then ~/.cache/sharpkit/data)")
    p.add_argument("--init-dir",
                   help="where the run's initial weights are kept (default: OUT/init, inside the run folder). They "
                        "depend only on dataset, arch, size and seed, so every control of a seed starts from the "
                        "same weights either way; give several runs one folder (e.g. runs/init) to have them load "
                        "the very same file")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast of the training steps (CUDA, or CPUs with AVX512-BF16/AMX); "
                        "metrics stay float32")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the run's config and its hash as JSON and exit, without training")
    _add_import(p)
    p.set_defaults(func=_cmd_train)


# `sharpkit train` flags that override one TrainConfig field each (argparse dest = the field's name).
TRAIN_OVERRIDES = ("epochs", "batch_size", "lr", "train_subset", "test_subset", "sam_rho", "weight_decay", "momentum",
                   "scheduler", "scheduler_step", "augmentation")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config: the control's and the recipe's settings, then the flags given."""
    from .run.config import absolute_dataset, check_overrides_apply, make_train_config

    size = _parse_size(args.size)
    if args.width is not None:
        size["dim" if args.arch == "vit" else "width"] = args.width
    overrides: dict[str, Any] = {"model_size": size}
    overrides.update({name: getattr(args, name) for name in TRAIN_OVERRIDES if getattr(args, name) is not None})
    for name in ("reproduce_wd_sam_bug", "bf16", "channels_last"):
        if getattr(args, name):
            overrides[name] = True
    check_overrides_apply(args.control, overrides)
    return make_train_config(args.arch, absolute_dataset(args.dataset), args.control, args.seed, **overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .run.train import train

    config = _train_config(args)
    if args.print_config:
        print(json.dumps({"config_hash": config.config_hash(), "config": config.to_dict()}, indent=2))
        return 0
    init_dir = args.init_dir if args.init_dir is not None else Path(args.out) / "init"
    result = train(config, args.out, data_root=args.data_root, init_dir=init_dir, device=args.device,
                   progress=not args.no_progress)
    line = f"{result.status}: {result.epochs_completed}/{config.epochs} epochs"
    if result.metrics:
        line += ", " + ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    if result.diverged_epoch:
        line += f" (diverged in epoch {result.diverged_epoch})"
    print(f"{line}\nwrote {result.out_dir}/result.json")
    return 0 if result.status == "ok" else 3


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from .metrics.registry import DEFAULT_EVALUATED, EVALUATION_CHOICES

    p = sub.add_parser("evaluate", help="compute the paper's metrics for a trained run",
                       description="Compute metrics of a finished run and add them to its result.json.")
    p.add_argument("run_dir", help="a run directory written by `sharpkit train`")
    p.add_argument("--metrics", nargs="+", choices=EVALUATION_CHOICES, default=list(DEFAULT_EVALUATED),
                   metavar="METRIC", help=f"metrics to compute (default: the paper's {', '.join(DEFAULT_EVALUATED)}; "
                   f"also {', '.join(m for m in EVALUATION_CHOICES if m not in DEFAULT_EVALUATED)})")
    p.add_argument("--sam-samples", type=int, default=100, help="random perturbations for SAM sharpness")
    p.add_argument("--sam-convention", choices=["paper", "clean"], default="paper")
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="fraction of the training set the sharpness metrics use (fixed split, seed 42)")
    p.add_argument("--rf-fraction", type=float, help="fraction for relative flatness (default: --train-fraction)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size of the sharpness metrics' loader")
    p.add_argument("--clean-train-data", action="store_true",
                   help="measure augmentation controls on clean training data (the paper uses augmented)")
    p.add_argument("--corrupted", help="a corrupted set, e.g. cifar10-c or cifar10-c:DIR (default: generate one)")
    p.add_argument("--corruption-subset", type=int, default=1000, help="test images to corrupt when generating")
    p.add_argument("--corruption-cache",
                   help="where generated corrupted sets live (default: $SHARPKIT_CACHE/generated-c, "
                        "else DATA_ROOT/generated-c)")
    p.add_argument("--data-root",
                   help="dataset root; also where a relative npz:PATH of the run is looked for when it is neither "
                        "in the current directory nor in the one the run was trained in")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    _add_import(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_clean
    from .run.config import locate_run_dataset
    from .run.evaluate import EvalSettings, evaluate_run

    settings = EvalSettings(metrics=tuple(args.metrics), batch_size=args.batch_size,
                            train_fraction=args.train_fraction, relative_flatness_fraction=args.rf_fraction,
                            augmented=not args.clean_train_data, sam_samples=args.sam_samples,
                            sam_convention=args.sam_convention, corrupted=args.corrupted,
                            corruption_subset=args.corruption_subset)
    # A run trained elsewhere may name its data by a path relative to where it was trained.
    located = locate_run_dataset(args.run_dir, args.data_root)
    dataset = load_clean(located, root=args.data_root) if located is not None else None
    values = evaluate_run(args.run_dir, settings, data_root=args.data_root, device=args.device,
                          cache_dir=args.corruption_cache, progress=not args.no_progress, dataset=dataset)
    for name, value in values.items():
        print(f"{name:24s} {value:.6g}")
    print(f"added to {args.run_dir}/result.json")
    return 0


def _add_corrupt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corrupt", help="write a dataset's test split in the CIFAR-10-C .npy layout",
                       description="Generate CIFAR-10-C style corruptions (severities 1-5) of a test split.")
    p.add_argument("--dataset", required=True, help="clean dataset name (cifar10, digits, npz:PATH, ...)")
    p.add_argument("--out", required=True, help="output folder (<corruption>.npy + labels.npy)")
    p.add_argument("--test-subset", type=int, help="corrupt a fixed random subset of N test images")
    p.add_argument("--corruptions", nargs="+", help="which corruptions (default: all available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="dataset root")
    p.add_argument("--no-progress", action="store_true")
    _add_import(p)
    p.set_defaults(func=_cmd_corrupt)


def _cmd_corrupt(args: argparse.Namespace) -> int:
    from .data import load_clean, subset_indices
    from .data.corruptions import write_corrupted_npy

    data = load_clean(args.dataset, root=args.data_root)
    idx = subset_indices(len(data.y_test), args.test_subset, seed=args.seed)
    written = write_corrupted_npy(data.x_test[idx], data.y_test[idx], args.out, corruptions=args.corruptions,
                                  seed=args.seed, progress=not args.no_progress)
    print(f"wrote {len(written)} corruptions x 5 severities of {len(idx)} images to {args.out}: {', '.join(written)}")
    print(f"load with: sharpkit evaluate RUN --corrupted cifar10-c:{args.out}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from .experiments.profiles import PROFILE_FILE_FORMAT

    p = sub.add_parser("sweep", help="run a profile's whole grid (resumable)",
                       description="Train and evaluate every run of a profile (a built-in one, or a grid of your "
                                   "own in a file) that has no stored\nresult, then the cross-seed metrics; a killed "
                                   "sweep started again finishes what is missing.",
                       epilog="profile files (--profile-file):\n" + PROFILE_FILE_FORMAT,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--profile", help="a built-in profile's name (see --list-profiles)")
    which.add_argument("--profile-file", metavar="FILE",
                       help="a grid of your own: a .toml or .json profile file (format below)")
    p.add_argument("--export-profile", action="store_true",
                   help="print the profile as JSON (a starting point for a --profile-file) and exit")
    p.add_argument("--results", default="results", help="results root (default: ./results)")
    p.add_argument("--executor", choices=["local", "slurm"], default="local")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (one per GPU on GPU machines)")
    p.add_argument("--threads", type=int, help="CPU threads per run (default: what the store's runs used, else 1); "
                   "the bits of a CPU result depend on it, so a store keeps one count whatever --workers is")
    p.add_argument("--cache", help="checkpoints and partial runs (default: $SHARPKIT_CACHE/<profile>, "
                   "$SHARPKIT_CACHE defaulting to ~/.cache/sharpkit/runs); finished trainings found there, or "
                   "in the other profiles' default caches, are reused instead of trained again")
    p.add_argument("--dry-run", action="store_true", help="print the grid, the metrics plan and the estimated cost")
    p.add_argument("--no-timing", action="store_true", help="with --dry-run: skip measuring step times")
    p.add_argument("--list-profiles", action="store_true", help="list the profiles and exit")
    p.add_argument("--verify", type=int, metavar="K",
                   help="re-run K randomly chosen stored runs from scratch and check every stored metric")
    p.add_argument("--data-root", help="dataset root")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    _add_import(p, workers=True)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments.profiles import PROFILES, get_profile, load_profile_file
    from .experiments.sweep import dry_run, sweep

    if args.list_profiles:
        for profile in PROFILES.values():
            print(f"{profile.name:14s} v{profile.version}  {len(profile.runs()):4d} runs  {profile.description}")
        return 0
    if args.profile_file:
        profile = load_profile_file(args.profile_file)
    elif args.profile:
        profile = get_profile(args.profile)
    else:
        raise ValueError(f"Expected --profile NAME (one of {', '.join(PROFILES)}) or --profile-file FILE (a grid of "
                         "your own, see `sharpkit sweep --help`), but got neither.")
    if args.export_profile:
        print(json.dumps(profile.to_dict(), indent=2))
        return 0
    if args.dry_run:
        dry_run(profile, measure=not args.no_timing, device=args.device, cache_dir=args.cache,
                workers=args.workers, results_root=args.results, threads=args.threads)
        return 0
    if args.verify is not None:
        from .experiments.sweep import verify

        outcomes = verify(profile, args.results, args.verify, data_root=args.data_root, device=args.device)
        failed = sum(not o.passed for o in outcomes)
        print(f"verify: {len(outcomes) - failed} passed, {failed} failed")
        return 1 if failed else 0
    sweep(profile, args.results, executor=args.executor, workers=args.workers, cache_dir=args.cache,
          data_root=args.data_root, device=args.device, progress=not args.no_progress, threads=args.threads)
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the paper-layout tables and the claim checks of stored results",
                       description="Tables (mean ± SEM over seeds, best evaluation in bold) and the paper's claims, "
                                   "computed from a profile's stored results.")
    p.add_argument("--profile", required=True, help="profile whose results to report")
    p.add_argument("--results", default="results", help="results root (default: ./results)")
    p.add_argument("--html", help="also write the tables and claims as one HTML file here")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .analysis.profile_report import profile_report

    report = profile_report(args.results, args.profile)
    print(report.text)
    if args.html:
        from .utils.io import write_text

        write_text(args.html, report.html)
        print(f"wrote {args.html}")
    return 0


def _add_diagonal_network(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagonal-network", help="the diagonal linear network experiment of Andriushchenko et al. "
                                                "(2023) sec. 5.2: sharpness measures vs test loss",
                       description="Train many diagonal linear networks on one sparse regression task (different "
                                   "step sizes and initialisations), measure the plain and rescaled Hessian trace "
                                   "and top eigenvalue at each minimum and print their Kendall tau with the test "
                                   "loss; --out stores every network and the taus with provenance.")
    p.add_argument("--networks", type=int, default=200)
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0, help="seed of the networks' step sizes and initialisations")
    p.add_argument("--task-seed", type=int, default=0, help="seed of the regression data")
    p.add_argument("--out", help="write the result JSON here (e.g. results/diagonal-network/result.json)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_diagonal_network)


def _cmd_diagonal_network(args: argparse.Namespace) -> int:
    import time

    from .analysis.diagonal_network import diagonal_record, diagonal_summary, measure_taus
    from .experiments.diagonal_network import DiagonalNetworkSettings, SparseRegression, diagonal_network_experiment
    from .utils.io import write_json
    from .utils.provenance import provenance

    task = SparseRegression(seed=args.task_seed)
    settings = DiagonalNetworkSettings(networks=args.networks, max_steps=args.max_steps, seed=args.seed)
    start = time.perf_counter()
    frame = diagonal_network_experiment(task, settings, progress=not args.no_progress)
    taus = measure_taus(frame)
    seconds = time.perf_counter() - start
    print("\n".join(diagonal_summary(frame, taus, seconds)))
    if args.out:
        write_json(args.out, diagonal_record(frame, taus, seconds, provenance("cpu")))
        print(f"wrote {args.out}")
    return 0


def _add_listings(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered model architectures")
    _add_import(p)
    p.set_defaults(func=lambda args: _print_list(__import__("sharpkit.models", fromlist=["x"]).list_models()))
    p = sub.add_parser("datasets", help="list registered datasets")
    _add_import(p)
    p.set_defaults(func=lambda args: _print_list(__import__("sharpkit.data", fromlist=["x"]).list_datasets()))
    p = sub.add_parser("controls", help="list the training controls")
    p.set_defaults(func=lambda args: _print_list(
        f"{c.name:18s} {c.label} (augmentation={c.augmentation}, weight_decay={c.weight_decay}, "
        f"sam={c.sam_variant if c.sam else False}"
        + (f", rho={c.sam_rho}" if c.sam_rho is not None else "")
        + (f", fam={c.fam_strength}" if c.fam_strength else "")
        + (")" if c.in_paper else "; beyond the paper)")
        for c in CONTROLS.values()))


def _print_list(items) -> int:
    for item in items:
        print(item)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="sharpkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sharpkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_corrupt(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_diagonal_network(sub)
    _add_listings(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .utils.plugins import plugins_loaded
    from .utils.provenance import pinned_code_version

    try:
        # The user's modules first (entry points, $SHARPKIT_IMPORT, --import): their models and datasets are then
        # known to this process and, through $SHARPKIT_IMPORT, to the workers it starts.
        with plugins_loaded(getattr(args, "imports", [])), pinned_code_version():
            # Records name the code as it was when the command started.
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, BusyError) as error:
        print(f"sharpkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
