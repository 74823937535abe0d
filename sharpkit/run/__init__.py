"""Layer 2, one run: the controls and the typed config of a run, the resumable trainer and the evaluation of
its every metric. Imports the building blocks (data, models, optim, metrics) and the utilities."""
