"""``python -m bench.benchmark_faces``: the face work of one ``/headshot`` request on the worker's host, before and
after ``jobs.worker.face_search``.

Six candidates at a render's size (928x1152, a 4-image request with 1.5 candidates each), made from scikit-image's
astronaut photo (crops, a mirror, contrast), ranked for likeness against a reference from the same photo, then the
face pass's search of the four kept. "one thread" is the worker before: one analyzer, every candidate searched in
turn, and the kept four searched again for the face pass. "N processes, every face" is the worker until 2026-12-05:
every candidate searched at once in N processes (``--processes``), the faces found reused for the face pass.
"N processes" is the worker now: the same, each render searched for large faces first
(``FaceAnalyzer.faces(large_first=True)``). Each must pick the same headshots in the same order as one thread, with
the same crops for "every face" and crops within a few pixels for large faces first (a search at another scale
frames the face a little differently); the JSON says whether they did and by how many pixels the crops moved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageEnhance, ImageOps

from bench.measure import report

__all__ = ["candidates", "main"]

SIZE = (928, 1152)
KEPT = 4


def candidates() -> list[Image.Image]:
    """Six headshot-sized renders of one face: other crops, a mirror, more contrast."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    crops = [(60, 0, 460, 500), (100, 20, 420, 420), (80, 0, 480, 500), (40, 0, 440, 512)]
    shots = [photo.crop(box).resize(SIZE, Image.Resampling.LANCZOS) for box in crops]
    shots.append(ImageOps.mirror(shots[0]))
    shots.append(ImageEnhance.Contrast(shots[1]).enhance(1.3))
    return shots


class FaceWork(NamedTuple):
    """What a request's face work decides: the candidates kept (best first), each candidate's likeness score, and
    the face pass's crop of each kept one, by candidate index."""

    picked: list[int]
    scores: list[float]
    crops: dict[int, tuple[int, int, int, int]]


def one_thread(analyzer: Any, images: list[Image.Image], reference: Any) -> FaceWork:
    """The worker's face work before ``FaceSearch``: rank in turn, then search the kept ones again, every face."""
    from pipeline.selfies.identity import score_headshots

    scores = score_headshots(analyzer, images, reference)
    return _kept(images, scores, lambda picked: [analyzer.faces(images[index]) for index in picked])


async def in_processes(search: Any, images: list[Image.Image], reference: Any) -> FaceWork:
    """The worker's face work since: every candidate at once, the faces reused for the face pass."""
    from pipeline.selfies.identity import scores_of_faces

    found = await search.faces(images)
    return _kept(images, scores_of_faces(found, reference), lambda picked: [found[index] for index in picked])


def _kept(images: list[Image.Image], scores: list[Any], faces_of: Callable[[list[int]], list[Any]]) -> FaceWork:
    """The best ``KEPT`` of ``images`` by ``scores`` and the face pass's crops of them, from the faces ``faces_of``
    finds in the kept ones (given their indices)."""
    from pipeline.diffusion.face_pass import crops_to_pass
    from pipeline.selfies.identity import DEFAULT_MIN_SCORE, pick_best

    picked = pick_best(scores, KEPT, DEFAULT_MIN_SCORE)
    crops = crops_to_pass([images[index] for index in picked], faces_of(picked), only_below=1.0)
    return FaceWork(picked, [score.score for score in scores], {picked[at]: box for at, box in crops.items()})


def _compared(before: FaceWork, after: FaceWork) -> dict[str, Any]:
    """Whether ``after`` keeps what ``before`` kept, how far its scores are from ``before``'s, and by how many pixels
    the crops of the candidates both keep moved."""
    both = before.crops.keys() & after.crops.keys()
    return {
        "same_picks": after.picked == before.picked,
        "same_picks_in_any_order": sorted(after.picked) == sorted(before.picked),
        "largest_score_difference": round(max(abs(a - b) for a, b in zip(after.scores, before.scores, strict=True)), 4),
        "crops_moved_px": max(
            (abs(a - b) for index in both for a, b in zip(after.crops[index], before.crops[index], strict=True)),
            default=0,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_faces", description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="pool sizes to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from skimage import data

    from jobs.worker.face_search import FaceSearch
    from pipeline.selfies.faces import FaceAnalyzer

    analyzer = FaceAnalyzer().load()
    photo = Image.fromarray(data.astronaut())
    reference = analyzer.faces(photo)[0].embedding
    images = candidates()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "images": len(images)}

    seconds, before = [], None
    for _ in range(args.repeats):
        started = time.perf_counter()
        before = one_thread(analyzer, images, reference)
        seconds.append(time.perf_counter() - started)
    results["one thread"] = {"s": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3)}

    async def timed(processes: int, large_first: bool) -> dict[str, Any]:
        search = FaceSearch(analyzer, processes, large_first=large_first)
        await search.start()  # a worker starts its processes before its first job
        try:
            seconds, after = [], None
            for _ in range(args.repeats):
                started = time.perf_counter()
                after = await in_processes(search, images, reference)
                seconds.append(time.perf_counter() - started)
        finally:
            search.close()
        assert after is not None and before is not None
        return {"s": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3)} | _compared(
            before, after
        )

    for processes in args.processes:
        results[f"{processes} processes, every face"] = asyncio.run(timed(processes, large_first=False))
        results[f"{processes} processes"] = asyncio.run(timed(processes, large_first=True))
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
