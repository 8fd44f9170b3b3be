"""Training recipes for the model lessons: profile sizes, data, evaluation, checkpoints."""
