"""Pure ML: model loading, selfie decoding, LoRA training, styles and generation.

Paths, images and dataclasses in; paths, images and dataclasses out. No Redis, no chat, no SQLite.
Importing this package (or ``pipeline.errors``, ``pipeline.styles``, ``pipeline.selfies.decoding``) never imports torch:
the bot process uses those three, and only the worker imports the modules that need torch.
"""
