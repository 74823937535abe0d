"""The ``sharpkit`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .controls import CONTROLS


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


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one (arch, dataset, control, seed) run",
                       description="Train one run of the paper's protocol; resumes if --out holds a checkpoint.")
    p.add_argument("--arch", required=True, help="model name (see `sharpkit models`)")
    p.add_argument("--dataset", required=True,
                   help="dataset name: cifar10, cifar100, tinyimagenet, digits or npz:PATH")
    p.add_argument("--control", required=True, choices=sorted(CONTROLS), help="training control")
    p.add_argument("--seed", type=int, required=True, help="run seed (init weights and data order)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log.jsonl, result.json)")
    p.add_argument("--epochs", type=int, help="epochs (default: the dataset recipe's, 100)")
    p.add_argument("--batch-size", type=int, help="batch size (default 256)")
    p.add_argument("--lr", type=float, help="learning rate (default: the dataset recipe's)")
    p.add_argument("--train-subset", type=int, help="train on a fixed random subset of N images")
    p.add_argument("--test-subset", type=int, help="evaluate on a fixed random subset of N test images")
    p.add_argument("--width", type=int, help="model width knob (resnet18/vgg19 base channels, vit dim)")
    p.add_argument("--size", action="append", default=[], metavar="KEY=VALUE",
                   help="other model size knobs, e.g. --size depth=4 (repeatable)")
    p.add_argument("--scheduler-step", choices=["epoch", "batch"], help="when a cosine schedule steps")
    p.add_argument("--reproduce-wd-sam-bug", action="store_true",
                   help="train CIFAR-10 weight_decay_sam without SAM, as the authors' script did")
    p.add_argument("--data-root", help="dataset root (default: $SHARPKIT_DATA, then ~/.cache/sharpkit/data)")
    p.add_argument("--init-dir", help="shared initial weights (default: OUT/../init)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import make_train_config
    from .train import train

    size = _parse_size(args.size)
    if args.width is not None:
        size["dim" if args.arch == "vit" else "width"] = args.width
    overrides: dict[str, Any] = {"model_size": size}
    for name in ("epochs", "batch_size", "lr", "train_subset", "test_subset", "scheduler_step"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.reproduce_wd_sam_bug:
        overrides["reproduce_wd_sam_bug"] = True
    if args.bf16:
        overrides["bf16"] = True
    if args.channels_last:
        overrides["channels_last"] = True
    config = make_train_config(args.arch, args.dataset, args.control, args.seed, **overrides)
    result = train(config, args.out, data_root=args.data_root, init_dir=args.init_dir, device=args.device,
                   progress=not args.no_progress)
    line = f"{result.status}: {result.epochs_completed}/{config.epochs} epochs"
    if result.metrics:
        line += ", " + ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    if result.diverged_epoch:
        line += f" (diverged in epoch {result.diverged_epoch})"
    print(f"{line}\nwrote {result.out_dir}/result.json")
    return 0 if result.status == "ok" else 3


def _add_listings(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered model architectures")
    p.set_defaults(func=lambda args: _print_list(__import__("sharpkit.models", fromlist=["x"]).list_models()))
    p = sub.add_parser("datasets", help="list registered datasets")
    p.set_defaults(func=lambda args: _print_list(__import__("sharpkit.data", fromlist=["x"]).list_datasets()))
    p = sub.add_parser("controls", help="list the training controls")
    p.set_defaults(func=lambda args: _print_list(
        f"{c.name:18s} {c.label} (augmentation={c.augmentation}, weight_decay={c.weight_decay}, sam={c.sam})"
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
    _add_listings(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"sharpkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
