"""Diffusion models (imports torch): loading, tiny offline models, LoRA training and slots, generation, speed-ups."""
