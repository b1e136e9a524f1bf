"""Where each user's blobs live in storage: everything of a user under one prefix, so ``/delete`` finds it all."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["export_key", "identity_key", "lora_key", "output_prefix", "selfie_key", "user_prefix"]


def user_prefix(user_key: str) -> str:
    """The storage folder of one user. Quoting makes it injective, so no user key can name another's folder."""
    if not user_key:
        raise ValueError("user_key is empty; expected 'platform:user_id'")
    return f"users/{quote(user_key, safe='')}/"


def selfie_key(user_key: str, session_id: int, number: int) -> str:
    return f"{user_prefix(user_key)}sessions/{session_id}/selfies/{number:03d}.jpg"


def lora_key(user_key: str, session_id: int) -> str:
    return f"{user_prefix(user_key)}sessions/{session_id}/lora/pytorch_lora_weights.safetensors"


def identity_key(lora_key: str) -> str:
    """The reference face embedding of the selfies a LoRA learnt from, stored beside it (JSON)."""
    return f"{lora_key.rsplit('/', 1)[0]}/identity.json"


def output_prefix(user_key: str, request_id: str) -> str:
    return f"{user_prefix(user_key)}outputs/{request_id}/"


def export_key(user_key: str, session_id: int, filename: str) -> str:
    """Where ``/export`` leaves a model file too big for the chat, for a download link (erased like the rest)."""
    return f"{user_prefix(user_key)}sessions/{session_id}/exports/{filename}"
