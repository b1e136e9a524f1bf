"""The GPU worker: arq entry point, model set-up, job functions, supervision, ranking and retention."""
