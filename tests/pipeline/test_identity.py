"""Likeness scores on real faces: the same person scores high, someone else low; the eval command reports them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from pipeline.selfies.evaluate import main as eval_main
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.selfies.identity import (
    DEFAULT_MIN_SCORE,
    HeadshotScore,
    cosine,
    pick_best,
    reference_embedding,
    score_headshots,
)


def lfw_face(index: int) -> Image.Image:
    from skimage import data

    face = (data.lfw_subset()[index] * 255).astype(np.uint8)  # type: ignore[no-untyped-call]
    return Image.fromarray(face).resize((300, 300), Image.Resampling.LANCZOS).convert("RGB")


@pytest.fixture(scope="module")
def reference(faces: FaceAnalyzer, selfie_images: list[Image.Image]) -> np.ndarray:
    return reference_embedding([faces.faces(image)[0].embedding for image in selfie_images])


@pytest.fixture(scope="module")
def new_shots(astronaut: Image.Image) -> list[Image.Image]:
    """Shots of the same person the reference never saw: other crops, contrast, light, a mirror and a tilt."""
    return [
        ImageEnhance.Contrast(astronaut.crop((100, 20, 400, 320))).enhance(1.3),
        ImageOps.mirror(astronaut.crop((120, 40, 380, 300))).rotate(6),
        ImageEnhance.Brightness(astronaut.crop((90, 0, 430, 340))).enhance(0.7),
    ]


def test_same_person_scores_higher_than_anyone_else(
    faces: FaceAnalyzer, reference: np.ndarray, new_shots: list[Image.Image]
) -> None:
    same = score_headshots(faces, new_shots, reference)
    others = score_headshots(faces, [lfw_face(index) for index in (0, 1, 2, 3, 5)], reference)
    assert all(score.face_found for score in same + others)
    # Measured: the same person 0.99+, five other people 0.80-0.86; the default threshold sits between.
    assert min(score.score for score in same) > DEFAULT_MIN_SCORE > max(score.score for score in others)


def test_a_headshot_without_a_face_scores_zero(faces: FaceAnalyzer, reference: np.ndarray) -> None:
    from skimage import data

    coffee = Image.fromarray(data.coffee())  # type: ignore[no-untyped-call]
    assert score_headshots(faces, [coffee], reference) == [HeadshotScore(0.0, False)]


def test_reference_is_not_pulled_by_another_persons_photo(
    faces: FaceAnalyzer, reference: np.ndarray, selfie_images: list[Image.Image]
) -> None:
    own = [faces.faces(image)[0].embedding for image in selfie_images[:4]]
    intruder = faces.faces(lfw_face(0))[0].embedding
    robust = reference_embedding([*own, intruder])
    plain = np.mean([*own, intruder], axis=0)
    assert cosine(robust, reference) > 0.999 > cosine(plain, reference)


def test_pick_best_drops_faceless_and_unlike_renders() -> None:
    scores = [
        HeadshotScore(0.0, False),
        HeadshotScore(0.95, True),
        HeadshotScore(0.81, True),
        HeadshotScore(0.97, True),
    ]
    assert pick_best(scores, 2, 0.92) == [3, 1]
    assert pick_best(scores, 4, 0.92) == [3, 1]  # fewer, but each one looks like the user
    # When nothing passes (a model that draws no faces) the user still gets what they asked for, best first.
    assert pick_best([HeadshotScore(0.0, False)] * 3, 2, 0.92) == [0, 1]


def test_eval_command_prints_a_table_mean_and_share(
    tmp_path: Path,
    selfie_images: list[Image.Image],
    new_shots: list[Image.Image],
    astronaut: Image.Image,
    capsys: pytest.CaptureFixture[str],
) -> None:
    selfies, headshots = tmp_path / "selfies", tmp_path / "headshots"
    selfies.mkdir()
    headshots.mkdir()
    for number, image in enumerate(selfie_images[:4]):
        image.save(selfies / f"selfie-{number}.jpg")
    new_shots[0].save(headshots / "a-likeness.png")
    lfw_face(1).save(headshots / "b-someone-else.png")
    Image.new("RGB", (64, 64), "grey").save(headshots / "c-no-face.png")
    # Someone else's headshot with the user small behind them: scored by its own face, as the worker ranks its renders
    # (large faces first), not by the likeness in the background (0.987 searched for every face, 0.858 by its own).
    crowd = Image.new("RGB", (1600, 1000), "gray")
    crowd.paste(lfw_face(1).resize((900, 900)), (0, 50))
    crowd.paste(astronaut, (1050, 200))
    crowd.save(headshots / "d-someone-else-the-user-behind.png")

    assert eval_main([str(selfies), str(headshots), "--threshold", "0.9"]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:6]}
    assert rows["a-likeness.png"][0] == "yes" and float(rows["a-likeness.png"][1]) > 0.95
    assert rows["b-someone-else.png"][0] == "yes" and float(rows["b-someone-else.png"][1]) < 0.9
    assert rows["c-no-face.png"] == ["no", "0.000"]
    assert rows["d-someone-else-the-user-behind.png"][0] == "yes"
    assert float(rows["d-someone-else-the-user-behind.png"][1]) < 0.9
    assert "over 4 headshots (4 selfies)" in table and "25% at or above 0.90" in table


def test_eval_command_explains_a_folder_without_faces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "selfies").mkdir()
    Image.new("RGB", (300, 300), "white").save(tmp_path / "selfies" / "wall.jpg")
    assert eval_main([str(tmp_path / "selfies"), str(tmp_path)]) == 2
    assert "no selfie in" in capsys.readouterr().err


def test_a_renders_search_for_large_faces_first_finds_the_same_face_and_small_ones_only_alone(
    faces: FaceAnalyzer,
) -> None:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    render = astronaut.resize((928, 1152))  # a headshot's framing at a render's size
    [everywhere] = faces.faces(render)
    [large] = faces.faces(render, large_first=True)
    # The same face: boxes within a tenth of its size, the same person by the descriptor (~0.6 apart is the limit).
    assert all(abs(a - b) <= everywhere.box[2] / 10 for a, b in zip(large.box, everywhere.box, strict=True))
    assert float(np.linalg.norm(large.embedding - everywhere.embedding)) < 0.3
    # A small face (88 px of a 1600 px wide shot, below the search's reach at the 800 px copy's own size) is still
    # found when it is alone...
    wide = Image.new("RGB", (1600, 1000), "gray")
    wide.paste(astronaut, (1050, 200))
    [small] = faces.faces(wide, large_first=True)
    assert small.box[2] < 100
    # ...and beside a doubtful large one (a faint face the search at the copy's own size scores 0.31): the search goes
    # on upsampled and the clear small face comes first...
    faint = wide.copy()
    faint.paste(ImageEnhance.Contrast(astronaut.resize((1000, 1000))).enhance(0.08), (0, 0))
    assert faces.faces(faint, large_first=True)[0].box[2] < 100
    # ...but beside a clear large face only the large one is found: what a render's ranking and face pass use.
    wide.paste(astronaut.resize((1000, 1000)), (0, 0))
    assert len(faces.faces(wide)) == 2
    [found] = faces.faces(wide, large_first=True)
    assert found.box[2] > 150
