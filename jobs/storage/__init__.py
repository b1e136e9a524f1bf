"""Blob storage shared by bot and worker: a local folder or an S3-compatible bucket behind one interface."""
