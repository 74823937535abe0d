#!/usr/bin/env bash
# Commit the finished runs of a background sweep (scripts/background_sweep.sh) with its sweep record: only
# results/<profile>/ is staged, so other work in progress is left alone. Every run is written atomically, so
# whatever is on disk is complete.
#
# Usage: scripts/commit_sweep.sh PROFILE
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:?usage: scripts/commit_sweep.sh PROFILE}
cd "$repo"
# Counted through the store's layout (sharpkit.experiments.layout, the one place that names its files), before
# anything is staged: without the venv the script stops here and leaves the index as it was.
python="$repo/.venv/bin/python"
test -x "$python" || { echo "no $python: run 'make venv' first" >&2; exit 1; }
runs=$("$python" -c 'import sys; from sharpkit.experiments.layout import StoreLayout
print(len(StoreLayout.of("results", sys.argv[1]).result_files()))' "$profile")
git add -- "results/$profile"
if git diff --cached --quiet -- "results/$profile"; then
    echo "nothing new in results/$profile"
    exit 0
fi
git commit --quiet -m "$profile results: $runs runs stored (background sweep at $(cut -c1-12 "results/$profile/PINNED_COMMIT"))" \
    -- "results/$profile"
git log --oneline -1
