"""The image safety check with NudeNet's real detector (from its wheel, on the CPU) on real photos.

No explicit image is needed to see the drop path work: a label set is configuration, and with one that holds a
label this photo does carry (a woman's face) the same detector, scores and threshold flag it.
"""

from __future__ import annotations

import sys

import pytest
from PIL import Image
from skimage import data

from pipeline.errors import ModelLoadError
from pipeline.safety.image import MIN_SCORE, UNSAFE_LABELS, ImageSafety


@pytest.fixture(scope="module")
def default_check() -> ImageSafety:
    return ImageSafety.load()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())  # NASA's portrait of Eileen Collins, public domain


def test_real_photos_pass_the_default_check(default_check: ImageSafety, astronaut: Image.Image) -> None:
    assert default_check.labels == UNSAFE_LABELS and default_check.min_score == MIN_SCORE
    assert default_check.findings(astronaut) == []
    # Other shapes and modes a render or a photo comes in: landscape, grey, with alpha.
    assert default_check.findings(Image.fromarray(data.coffee())) == []
    assert default_check.findings(Image.fromarray(data.chelsea()).convert("L")) == []
    assert default_check.findings(astronaut.convert("RGBA")) == []


def test_a_label_the_photo_carries_flags_it_with_its_score(astronaut: Image.Image) -> None:
    check = ImageSafety.load(labels={*UNSAFE_LABELS, "FACE_FEMALE"})
    findings = check.findings(astronaut)
    assert [finding.label for finding in findings] == ["FACE_FEMALE"]
    assert findings[0].score >= MIN_SCORE
    # The threshold is configuration too: above the face's score, the same photo passes.
    assert ImageSafety.load(labels={"FACE_FEMALE"}, min_score=0.99).findings(astronaut) == []


def test_a_label_nudenet_does_not_have_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match="NudeNet has no label NUDE_ISH; pick from: ANUS_COVERED"):
        ImageSafety.load(labels={"NUDE_ISH"})


def test_a_detector_that_cannot_load_names_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # what an import finds when the package is not installed
    with pytest.raises(ModelLoadError, match="HEADSHOT_IMAGE_SAFETY=off") as failed:
        ImageSafety.load()
    assert "pip install 'headshot-bot[worker]'" in str(failed.value)
