"""``headshot-eval SELFIES_DIR HEADSHOTS_DIR``: how much do the headshots look like the person in the selfies?

Prints one row per headshot (likeness score, face found), then the mean score and the share at or above the
threshold, so an operator can compare models, styles or training recipes on real weights.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.errors import SelfieRejected
from pipeline.selfies.decoding import read_selfie
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.selfies.identity import DEFAULT_MIN_SCORE, HeadshotScore, reference_embedding, score_headshots

__all__ = ["EvalReport", "evaluate", "main"]


@dataclass(frozen=True)
class EvalReport:
    selfies_used: int
    rows: list[tuple[str, HeadshotScore]]
    threshold: float

    @property
    def mean(self) -> float:
        return sum(score.score for _, score in self.rows) / len(self.rows) if self.rows else 0.0

    @property
    def share_above(self) -> float:
        passing = sum(score.face_found and score.score >= self.threshold for _, score in self.rows)
        return passing / len(self.rows) if self.rows else 0.0

    def table(self) -> str:
        width = max([len(name) for name, _ in self.rows] + [8])
        lines = [f"{'headshot':<{width}}  face  score", f"{'-' * width}  ----  -----"]
        lines += [f"{name:<{width}}  {'yes' if s.face_found else 'no':<4}  {s.score:.3f}" for name, s in self.rows]
        lines += [
            f"mean score {self.mean:.3f} over {len(self.rows)} headshots ({self.selfies_used} selfies)",
            f"{self.share_above:.0%} at or above {self.threshold:.2f}",
        ]
        return "\n".join(lines)


def evaluate(
    selfies_dir: Path,
    headshots_dir: Path,
    *,
    threshold: float = DEFAULT_MIN_SCORE,
    analyzer: FaceAnalyzer | None = None,
) -> EvalReport:
    """Score every image in ``headshots_dir`` against the robust mean of the faces in ``selfies_dir``."""
    analyzer = analyzer or FaceAnalyzer()
    # 1. The reference: the most confident face of each readable selfie.
    embeddings = []
    for path in _images(selfies_dir):
        image = _open(path)
        faces = analyzer.faces(image) if image is not None else []
        if faces:
            embeddings.append(faces[0].embedding)
        else:
            print(f"skipping selfie {path.name}: no readable face", file=sys.stderr)
    if not embeddings:
        raise ValueError(f"no selfie in {selfies_dir} shows a face I can find; give a folder of photos of one person")
    reference = reference_embedding(embeddings)

    # 2. Every headshot scored against it (unreadable files count as faceless).
    paths = _images(headshots_dir)
    opened = [_open(path) for path in paths]
    blank = Image.new("RGB", (8, 8))
    # Searched as the worker searches its renders, so a headshot scores here what it scored in the worker's ranking.
    scores = score_headshots(analyzer, [image or blank for image in opened], reference, large_first=True)
    rows = [(path.name, score) for path, score in zip(paths, scores, strict=True)]
    return EvalReport(len(embeddings), rows, threshold)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give a folder of image files")
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def _open(path: Path) -> Image.Image | None:
    """The file as an upright RGB image, through the same safe decoder as selfies; None if it is not one."""
    try:
        selfie = read_selfie(path.read_bytes(), min_side=1)
    except SelfieRejected as rejection:
        print(f"{path.name}: {rejection}", file=sys.stderr)
        return None
    return Image.open(io.BytesIO(selfie.jpeg)).convert("RGB")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headshot-eval", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("selfies", type=Path, help="folder of one person's selfies")
    parser.add_argument("headshots", type=Path, help="folder of generated headshots to score")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_MIN_SCORE, help="least score that counts as a likeness"
    )
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.selfies, args.headshots, threshold=args.threshold)
    except ValueError as error:
        print(f"headshot-eval: {error}", file=sys.stderr)
        return 2
    print(report.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
