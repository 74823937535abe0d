"""Layer 3, a grid of runs: profiles (the grids), the crash-safe result store, the resumable sweep and the
diagonal-network experiment. Imports one run and the layers below it."""
