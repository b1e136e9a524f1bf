"""The contract between bot and worker: payloads, enqueue helpers, events, blob storage, settings, the worker.

``jobs.worker.app`` imports the pipeline (and so torch) only inside the worker's start-up and job functions.
"""
