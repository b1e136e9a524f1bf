"""``python -m bench.benchmark_faces``: the face work of one ``/headshot`` request on the worker's host, before and
after ``jobs.worker.face_search``.

Six candidates at a render's size (928x1152, a 4-image request with 1.5 candidates each), made from scikit-image's
astronaut photo (crops, a mirror, contrast), ranked for likeness against a reference from the same photo, then the
face pass's search of the four kept. "one thread" is the worker before: one analyzer, every candidate searched in
turn, and the kept four searched again for the face pass. "processes" is the worker now: every candidate searched at
once in ``--processes`` processes, the faces found reused for the face pass. Both must pick the same headshots in the
same order with the same crops; the JSON says whether they did.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

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


def one_thread(analyzer: Any, images: list[Image.Image], reference: Any) -> tuple[list[int], dict[int, Any]]:
    """The worker's face work before ``FaceSearch``: rank in turn, then search the kept ones again."""
    from pipeline.diffusion.face_pass import faces_to_pass
    from pipeline.selfies.identity import DEFAULT_MIN_SCORE, pick_best, score_headshots

    picked = pick_best(score_headshots(analyzer, images, reference), KEPT, DEFAULT_MIN_SCORE)
    return picked, faces_to_pass([images[index] for index in picked], analyzer, only_below=1.0)


async def in_processes(search: Any, images: list[Image.Image], reference: Any) -> tuple[list[int], dict[int, Any]]:
    """The worker's face work now: every candidate at once, the faces reused for the face pass."""
    from pipeline.diffusion.face_pass import crops_to_pass
    from pipeline.selfies.identity import DEFAULT_MIN_SCORE, pick_best, scores_of_faces

    found = await search.faces(images)
    picked = pick_best(scores_of_faces(found, reference), KEPT, DEFAULT_MIN_SCORE)
    kept = [images[index] for index in picked]
    return picked, crops_to_pass(kept, [found[index] for index in picked], only_below=1.0)


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

    async def timed(processes: int) -> dict[str, Any]:
        search = FaceSearch(analyzer, processes)
        await search.start()  # a worker starts its processes before its first job
        try:
            seconds, after = [], None
            for _ in range(args.repeats):
                started = time.perf_counter()
                after = await in_processes(search, images, reference)
                seconds.append(time.perf_counter() - started)
        finally:
            search.close()
        return {
            "s": [round(s, 3) for s in seconds],
            "median_s": round(statistics.median(seconds), 3),
            "same_picks_and_crops": after == before,
        }

    for processes in args.processes:
        results[f"{processes} processes"] = asyncio.run(timed(processes))
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
