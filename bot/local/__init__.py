"""The local terminal chat frontend, the demo runtime and sample selfies."""
