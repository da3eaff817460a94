"""OCR accuracy with speed: character error rate and images/s of the ``ocr-text``
catalog model's engine (rapidocr-onnxruntime's PP-OCR models) at candidate settings.

Documents are rendered here: invoice-like lines of several lengths in several fonts
(Pillow's bundled font and the DejaVu / Liberation TrueType fonts where the machine has
them) and sizes, one or three lines per image. Each candidate runs the engine the Triton
model wraps, in this process, on every document (after one warm-up pass), and is scored
by the character error rate of its transcription (lines top to bottom, joined with
newlines; spaces count) against the rendered text.

- ``ocr.cer.<candidate>`` (fraction, lower is better) next to the current default's
  (``max960``: ``det_limit_type="max"``, ``det_limit_side_len=960``); informational.
- ``ocr.images_per_s.<candidate>`` next to the default's.

Candidates: ``max960`` (the catalog's default: small images are not scaled up),
``min736`` (rapidocr's own defaults: the short side scaled to at least 736 px),
``max1280`` and ``min480``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from bench import results

ORDER = 70
TIMEOUT_S = 900.0

LINES = (
    "Invoice 2026-12-03 total 42.50 EUR",
    "Order 48213 shipped to Berlin",
    "Total due: 1,240.00 USD",
    "Ref A-77 paid",
    "Customer: Jane Q. Public, 12 Main Street",
    "VAT 19% included",
    "Delivery note 0091 of 2 pages",
    "Thank you for your business",
)
SIZES = (24, 40)
TRUETYPE = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


@dataclass(frozen=True)
class Candidate:
    """One setting of the detector."""

    name: str
    limit_type: str
    side_len: int


CANDIDATES = (
    Candidate("max960", "max", 960),
    Candidate("min736", "min", 736),
    Candidate("max1280", "max", 1280),
    Candidate("min480", "min", 480),
)
DEFAULT = CANDIDATES[0]


def _fonts(size: int) -> list[Any]:
    fonts: list[Any] = [ImageFont.load_default(size=size)]
    fonts += [ImageFont.truetype(path, size) for path in TRUETYPE if Path(path).is_file()]
    return fonts


def documents() -> list[tuple[bytes, str]]:
    """(PNG, its text) for every font and size, with one and with three lines."""
    docs: list[tuple[bytes, str]] = []
    n = 0
    for size in SIZES:
        for font in _fonts(size):
            for count in (1, 3):
                lines = [LINES[(n + i) % len(LINES)] for i in range(count)]
                n += 1
                height = int(size * 1.8) * count + size
                width = int(max(font.getlength(line) for line in lines)) + 2 * size
                image = Image.new("RGB", (width, height), "white")
                draw = ImageDraw.Draw(image)
                for i, line in enumerate(lines):
                    draw.text(
                        (size, size // 2 + i * int(size * 1.8)), line, fill="black", font=font
                    )
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                docs.append((buffer.getvalue(), "\n".join(lines)))
    return docs


def _transcribe(engine: Any, png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    result, _ = engine(bgr)
    lines = sorted(result or [], key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0])))
    return "\n".join(str(text) for _, text, _ in lines)


def measure(candidate: Candidate, docs: Sequence[tuple[bytes, str]]) -> tuple[float, float]:
    """(character error rate, images/s) of ``candidate`` on ``docs``."""
    from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

    engine = RapidOCR(det_limit_type=candidate.limit_type, det_limit_side_len=candidate.side_len)
    for png, _ in docs[:3]:
        _transcribe(engine, png)
    errors = 0
    characters = 0
    started = time.perf_counter()
    for png, truth in docs:
        errors += Levenshtein.distance(_transcribe(engine, png), truth)
        characters += len(truth)
    elapsed = time.perf_counter() - started
    return errors / characters, len(docs) / elapsed


async def run() -> None:
    """Measure and record the figures (see the module docstring)."""
    docs = documents()
    figures = {c.name: await asyncio.to_thread(measure, c, docs) for c in CANDIDATES}
    base_cer, base_rate = figures[DEFAULT.name]
    for candidate in CANDIDATES:
        cer, rate = figures[candidate.name]
        if candidate is DEFAULT:
            results.record(f"ocr.cer.{candidate.name}", cer, "CER", higher_is_better=False)
            results.record(f"ocr.images_per_s.{candidate.name}", rate, "images/s")
            continue
        results.record(
            f"ocr.cer.{candidate.name}", cer, "CER", f"ocr.cer.{DEFAULT.name}",
            base_cer or None, higher_is_better=False,
        )  # fmt: skip
        results.record(
            f"ocr.images_per_s.{candidate.name}", rate, "images/s",
            f"ocr.images_per_s.{DEFAULT.name}", base_rate,
        )  # fmt: skip
