"""A worker's face search in processes of its own finds exactly what its own analyzer finds, all images at once."""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image

from jobs.worker.face_search import FaceSearch, default_processes
from pipeline.selfies.faces import Face, FaceAnalyzer


def _same(first: list[list[Face]], second: list[list[Face]]) -> bool:
    return [[(face.box, face.score, face.sharpness) for face in faces] for faces in first] == [
        [(face.box, face.score, face.sharpness) for face in faces] for faces in second
    ] and all(
        np.array_equal(one.embedding, other.embedding)
        for faces, others in zip(first, second, strict=True)
        for one, other in zip(faces, others, strict=True)
    )


def test_processes_find_the_same_faces_as_the_workers_own_analyzer() -> None:
    from skimage import data

    faces = FaceAnalyzer()
    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    coffee = Image.fromarray(data.coffee())  # type: ignore[no-untyped-call]
    # A render's size and a headshot's framing, a faceless image, a small face in a wide shot.
    images = [astronaut.resize((928, 1152)), coffee, astronaut.resize((256, 256)).crop((0, 0, 256, 256))]
    wide = Image.new("RGB", (1152, 928), "gray")
    wide.paste(astronaut.resize((400, 400)), (600, 250))
    images.append(wide)

    async def search(processes: int) -> list[list[Face]]:
        search = FaceSearch(faces, processes)
        try:
            await search.start()
            return await search.faces(images)
        finally:
            search.close()

    in_processes = asyncio.run(search(2))
    in_thread = asyncio.run(search(0))

    assert [len(found) for found in in_thread] == [1, 0, 1, 1]
    assert _same(in_processes, in_thread)


def test_a_worker_searches_with_one_process_per_candidate_but_leaves_a_core() -> None:
    import os

    cores = os.cpu_count() or 2
    assert default_processes(6) == max(1, min(6, cores - 1))
    assert default_processes(1) == 1
