"""LoRA training: the loop, its loss, the cached training set and the warm training slot."""
