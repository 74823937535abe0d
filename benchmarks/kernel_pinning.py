"""Does pinning kernel dispatch make CPU training bit-identical across machines?

A CPU picks its kernels by its features (AVX2, AVX-512, AVX512-BF16, AMX): oneDNN (convolutions, and bf16
matmuls), MKL (float32 matmuls) and ATen's own vector kernels each dispatch on them, so two machines with
other features train other bits from one config. Each library can be capped: oneDNN by
``ONEDNN_MAX_CPU_ISA``, MKL by ``MKL_CBWR`` (conditional numerical reproducibility) and ATen by
``ATEN_CPU_CAPABILITY``. This trains one small run of each architecture (one thread, real CIFAR-10 images)
under each setting below, twice, in fresh processes, and records the SHA-256 of the final weights:

- within a setting, the two digests must agree (determinism on one machine);
- across settings on one machine, a differing digest shows that the setting changes the kernels in use;
- across machines, the same setting's digests agree only if pinning makes the result independent of the
  hardware: each run of this script adds this machine's digests to ``results/kernel-pinning/`` (one file
  per CPU and flag set) and compares them with every machine stored there.

Usage: python benchmarks/kernel_pinning.py [--archs resnet18 vit] [--out results/kernel-pinning]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = "npz:" + str((REPO / ".." / "shared" / "data" / "cifar10-jpeg-20k.npz").resolve())
SETTINGS = {
    "default": {},
    "onednn-avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
PRECISIONS = {"fp32": False, "bf16": True}

# One process trains one run and prints its digest: the environment of a setting must be in place before
# torch loads its libraries, so every training is a fresh interpreter.
_CHILD = r"""
import hashlib, json, sys, tempfile, time
import torch
torch.set_num_threads(1)
from sharpkit.run.config import make_train_config
from sharpkit.run.train import train
from sharpkit.utils.io import load_torch
from sharpkit.utils.provenance import hardware
arch, dataset, bf16 = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
from sharpkit.experiments.profiles import MINI_SIZES
size = MINI_SIZES[arch]  # the cifar10-mini and cifar10-minima networks
config = make_train_config(arch, dataset, "baseline", 0, epochs=1, batch_size=64, lr=0.05, train_subset=512,
                           test_subset=256, model_size=size, bf16=bf16, channels_last=arch == "resnet18")
with tempfile.TemporaryDirectory() as work:
    start = time.perf_counter()
    result = train(config, f"{work}/run", init_dir=f"{work}/init", device="cpu", progress=False)
    seconds = time.perf_counter() - start
    state = load_torch(f"{work}/run/checkpoint.pt")["model"]
digest = hashlib.sha256()
for name in sorted(state):
    digest.update(name.encode()); digest.update(state[name].detach().contiguous().cpu().numpy().tobytes())
print(json.dumps({"digest": digest.hexdigest(), "seconds": seconds, "status": result.status,
                  "test_accuracy": result.metrics.get("test_accuracy"),
                  "cpu_capability": hardware()["cpu_capability"]}))
"""


def train_once(arch: str, bf16: bool, env: dict[str, str]) -> dict:
    child_env = {k: v for k, v in os.environ.items() if k not in SETTINGS["all-avx2"]}
    child_env.update(env, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _CHILD, arch, DATASET, "1" if bf16 else "0"], env=child_env,
                         capture_output=True, text=True, check=False, cwd=REPO)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine_key(hardware: dict) -> str:
    blob = json.dumps([hardware["cpu"], hardware["cpu_flags"]])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "vit"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default=str(REPO / "results" / "kernel-pinning"))
    args = parser.parse_args()

    from sharpkit.utils.provenance import hardware, package_versions, utc_now

    here = hardware()
    rows = {}
    for setting in args.settings:
        for arch in args.archs:
            for precision, bf16 in PRECISIONS.items():
                runs = [train_once(arch, bf16, SETTINGS[setting]) for _ in range(2)]
                key = f"{setting}/{arch}/{precision}"
                rows[key] = {"env": SETTINGS[setting], "runs": runs,
                             "deterministic": len({r.get("digest") for r in runs}) == 1 and "digest" in runs[0]}
                errors = [r["error"] for r in runs if "error" in r]
                if errors:
                    print(f"{key:32s} FAILED: {errors[0]}", flush=True)
                    continue
                r = runs[0]
                print(f"{key:32s} {r['digest'][:16]:16s} repeat {'same' if rows[key]['deterministic'] else 'DIFFERS'}"
                      f"  {r['seconds']:6.1f} s  ATen {r['cpu_capability']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"hardware": here, "versions": package_versions(), "time": utc_now(), "dataset": DATASET,
              "load_1min": os.getloadavg()[0], "rows": rows}
    (out / f"{machine_key(here)}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    compare(out)


def compare(out: Path) -> None:
    """Per setting, architecture and precision: the digests on this machine vs the default setting, and
    whether every stored machine agrees."""
    machines = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    print(f"\n{len(machines)} machine(s) stored in {out}: " + "; ".join(
        f"{m['hardware']['cpu']} [{' '.join(m['hardware']['cpu_flags'])}]" for m in machines))
    keys = sorted({k for m in machines for k in m["rows"]})
    for key in keys:
        digests = [m["rows"][key]["runs"][0].get("digest") for m in machines if key in m["rows"]]
        setting, arch, precision = key.split("/")
        default = [m["rows"].get(f"default/{arch}/{precision}", {}).get("runs", [{}])[0].get("digest")
                   for m in machines if key in m["rows"]]
        same_as_default = all(d == e for d, e in zip(digests, default))
        across = "n/a (one machine)" if len(digests) < 2 else ("same" if len(set(digests)) == 1 else "DIFFER")
        print(f"{key:32s} vs default on each machine: {'same bits' if same_as_default else 'other bits'}; "
              f"across machines: {across}")


if __name__ == "__main__":
    main()
