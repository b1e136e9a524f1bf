"""A worker start's second process: the VAE decoder compiled beside everything else the start does.

``pipeline.diffusion.decoder_compile`` says why the graphs it compiles are the worker's own. ``prepare_model`` starts
it once the model is loaded (``HEADSHOT_COMPILE_DECODER_APART``, inductor only) and waits for it just before its
renders first decode. Whatever goes wrong there (a crash, a full GPU, a hang past ``WAIT_S``) costs only time: the
worker logs it and compiles the decoder itself, as it did before.

Once a process has put the graphs in the kernel folder, it leaves a note there (``kept_note``); a later start on that
folder (a restart) starts no process: it would only load the graphs from the cache to exit, while the worker waited
for it and then loaded them again (BENCHMARKS.md 2026-12-05 fifteenth session). The worker then loads them itself, as
it did before the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MIN_GPU_GIB", "WAIT_S", "DecoderProcess", "compiles_decoder_apart", "kept_note"]

log = logging.getLogger(__name__)

# The smallest GPU a worker compiles its decoder apart on unless told. The process holds the VAE and its decodes
# (8.64 GiB reserved at most on an H200, an upscale's at twice a headshot's size the largest; it logs what it
# reserved) beside the start's own peak, which still reached 120.7 of 139.8 GiB (BENCHMARKS.md 2026-12-05 twelfth
# session), and should leave ~25 GiB of an 80 GB card (training at batch 8 peaked at 50.8 GiB, rendering at ~16);
# smaller cards train with checkpointing, close to their memory.
MIN_GPU_GIB = 72.0

# Far past the decoder's compile on any host measured (44.7 s on an H200, 43.5 s for the tiny model on a 2-core
# CPU): past it the process is taken for hung and the worker compiles the decoder itself.
WAIT_S = 900.0


class DecoderProcess:
    """The running ``python -m pipeline.diffusion.decoder_compile``; ``wait`` for its result once."""

    def __init__(self, process: subprocess.Popen[str], errors: Any, started: float, note: Path | None = None) -> None:
        self._process, self._errors, self._started = process, errors, started
        self._note = note  # written once the process has put the graphs in the kernel folder
        self.result: dict[str, Any] | None = None

    @classmethod
    def start(
        cls,
        *,
        model: str,
        model_cache_dir: Path,
        compile_cache_dir: Path,
        device: str,
        dtype: str,
        backend: str,
        shapes: Sequence[tuple[int, int, int, int]],
        note: Path | None = None,
    ) -> DecoderProcess:
        """Start compiling ``model``'s decoder (its VAE in ``dtype`` on ``device``) on ``shapes`` into
        ``compile_cache_dir``, the worker's kernel folder; ``note`` (``kept_note``'s) is written there once it has."""
        command = [
            sys.executable, "-m", "pipeline.diffusion.decoder_compile",
            "--model", model, "--model-cache-dir", str(model_cache_dir), "--compile-cache-dir", str(compile_cache_dir),
            "--device", device, "--dtype", dtype, "--backend", backend, "--shapes", json.dumps(list(shapes)),
        ]  # fmt: skip
        # Its stderr (torch's warnings, a traceback) in a file, not a pipe nobody reads while it fills.
        errors = tempfile.TemporaryFile("w+")  # noqa: SIM115  # outlives this call: wait() closes it
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        log.info("compiling the VAE decoder in process %d beside the start (%d shapes)", process.pid, len(shapes))
        return cls(process, errors, time.monotonic(), note)

    def wait(self, timeout_s: float = WAIT_S) -> dict[str, Any] | None:
        """Its result (seconds, graphs, cache hits and misses), or None when it failed or hung (then stopped): the
        worker compiles what it did not. Logs either way; call once."""
        try:
            out, _ = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._stop()
            log.warning(
                "the decoder's compile beside the start ran past %.0f s: stopped; the worker compiles it", timeout_s
            )
            return None
        result = _last_json_line(out) if self._process.returncode == 0 else None
        if result is None:
            self._errors.seek(0)
            tail = self._errors.read()[-2000:]
            log.warning(
                "the decoder's compile beside the start failed (exit %s), the worker compiles it: %s",
                self._process.returncode,
                tail,
            )
            return self._close(None)
        peak = result.get("gpu_peak_gib")
        log.info(
            "VAE decoder compiled beside the start: %d graphs (%d from the cache), ready %.1f s after it began%s",
            result["graphs"],
            result["cache_hits"],
            time.monotonic() - self._started,
            "" if peak is None else f", {peak} GiB of the GPU reserved at most",
        )
        if self._note is not None:
            try:
                self._note.write_text(json.dumps(result) + "\n")
            except OSError as error:  # a read-only or full folder costs the next start a process, not this one
                log.warning("could not note the decoder's kept graphs in %s (%s)", self._note, error)
        return self._close(result)

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def __enter__(self) -> DecoderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the process unless it was waited for (the start failed first): nothing is left compiling."""
        if not self._errors.closed:
            self._stop()

    def _stop(self) -> None:
        self._process.kill()
        self._process.communicate()
        self._close(None)

    def _close(self, result: dict[str, Any] | None) -> dict[str, Any] | None:
        self._errors.close()
        self.result = result
        return result


def _last_json_line(out: str) -> dict[str, Any] | None:
    """The result the process printed last, or None when its output ends in anything else (a library's print)."""
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return result if isinstance(result, dict) and {"graphs", "cache_hits"} <= result.keys() else None


def kept_note(
    compile_cache_dir: Path, *, model: str, device: str, dtype: str, backend: str, shapes: Sequence[Any]
) -> Path:
    """The note a decoder process leaves in ``compile_cache_dir`` once its graphs are there: named by everything that
    decides those graphs and which cache entries fit them (the model, its dtype, the backend, the shapes in their
    order, torch's version and the GPU), so a start that would make other graphs finds no note and starts a process."""
    import torch

    from pipeline.diffusion.loading import device_name

    what = [model, dtype, backend, [list(shape) for shape in shapes], torch.__version__, device_name(device)]
    digest = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]
    return compile_cache_dir / f"decoder-graphs-{digest}.json"


def compiles_decoder_apart(setting: bool | None, device: str) -> bool:
    """``HEADSHOT_COMPILE_DECODER_APART`` for a worker on ``device``: as set, or unset, whether it is a CUDA GPU of
    ``MIN_GPU_GIB`` or more."""
    if setting is not None:
        return setting
    if not device.startswith("cuda"):
        return False
    from pipeline.diffusion.loading import gpu_memory_gib

    return (gpu_memory_gib(device) or 0.0) >= MIN_GPU_GIB
