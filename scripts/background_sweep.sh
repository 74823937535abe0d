#!/usr/bin/env bash
# Run (or resume) a profile's sweep in the background from a git worktree pinned at one commit, so that work
# on this checkout never changes the code of a sweep that runs for hours. Results go to this checkout's
# results/<profile>/ (commit them as they come: scripts/commit_sweep.sh); the pinned commit is kept in
# results/<profile>/PINNED_COMMIT, so the next session resumes with the same code.
#
# Usage: scripts/background_sweep.sh PROFILE [COMMIT]      (default: the pinned commit, else HEAD)
#        WORKERS=2 (default) sets the local worker processes (one thread each on a 2-core CPU).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:?usage: scripts/background_sweep.sh PROFILE [COMMIT]}
pin="$repo/results/$profile/PINNED_COMMIT"
commit=${2:-$(cat "$pin" 2>/dev/null || git -C "$repo" rev-parse HEAD)}
commit=$(git -C "$repo" rev-parse --verify "$commit^{commit}")
tree="$repo/../sweep-$profile"  # beside the checkout, so that ../shared resolves the same way
python="$repo/.venv/bin/python"
test -x "$python" || { echo "no $python: run 'make venv' first" >&2; exit 1; }

if [ ! -d "$tree" ]; then
    git -C "$repo" worktree prune
    git -C "$repo" worktree add --detach "$tree" "$commit" >/dev/null
fi
if [ "$(git -C "$tree" rev-parse HEAD)" != "$commit" ]; then
    echo "$tree is at $(git -C "$tree" rev-parse HEAD), not the pinned $commit; remove it" \
         "(git worktree remove $tree) or pass that commit" >&2
    exit 1
fi
if pgrep -f "sharpkit.cli sweep --profile $profile " >/dev/null; then
    echo "a sweep of $profile is already running (pgrep -af 'sharpkit.cli sweep')" >&2
    exit 1
fi
# Other work beside the sweep should run under `nice -n 19`. With the kernel's autogroup scheduling on,
# nice only orders processes within one session: a test run in another terminal then takes half the CPU
# from the sweep whatever its nice value (measured here: 86% for a nice-19 pytest against 55% for each
# sweep worker). Turned off where we may (root), so that nice means what it says.
autogroup=/proc/sys/kernel/sched_autogroup_enabled
if [ -w "$autogroup" ] && [ "$(cat "$autogroup")" = 1 ]; then
    echo 0 > "$autogroup" && echo "turned off autogroup scheduling ($autogroup), so nice -n 19 work yields to the sweep"
fi
mkdir -p "$repo/results/$profile"
echo "$commit" > "$pin"
cd "$tree"
# PYTHONPATH: the worktree's sharpkit, not the editable install of this checkout.
PYTHONPATH="$tree" nohup "$python" -m sharpkit.cli sweep --profile "$profile" --workers "${WORKERS:-2}" \
    --results "$repo/results" --no-progress >>"$tree/sweep.log" 2>&1 &
echo "sweep of $profile started (pid $!) from $tree at ${commit:0:12}; log: $tree/sweep.log"
