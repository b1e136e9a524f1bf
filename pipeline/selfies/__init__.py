"""Torch-free selfie work, used by bot and worker: decoding, faces, identity, duplicate hashes, intake checks."""
