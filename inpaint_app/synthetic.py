"""Synthetic out-of-distribution images in the MNIST frame (uint8 ``[n, 1, 28, 28]``, white on
black): rendered letters, typed digits and pen scribbles, for ``pipelines.ood_eval`` and the
folder demo. Deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts/TTF", "/Library/Fonts")


def rendered_letters(n: int, seed: int = 0, letters: str = LETTERS) -> torch.Tensor:
    """uint8 ``[n, 1, 28, 28]`` white letters on black, MNIST-like framing, from Pillow's font."""
    rng = np.random.default_rng(seed)
    return torch.stack([_glyph(rng, letters, lambda size: ImageFont.load_default(size=size))
                        for _ in range(n)])


def rendered_digits(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[n, 1, 28, 28]`` typed digits 0-9, white on black, MNIST-like framing, in the
    system's TrueType fonts (DejaVu, Liberation: sans, serif, mono, bold, italic) and Pillow's
    own: a stand-in for a second digit set that is not handwritten."""
    rng = np.random.default_rng(seed + 11)
    fonts = sorted(p for d in FONT_DIRS for p in Path(d).rglob("*.ttf"))  # none: Pillow's

    def font_for(size: int) -> ImageFont.FreeTypeFont:
        pick = int(rng.integers(len(fonts) + 1))
        return (ImageFont.truetype(str(fonts[pick]), size) if pick < len(fonts)
                else ImageFont.load_default(size=size))

    return torch.stack([_glyph(rng, "0123456789", font_for) for _ in range(n)])


def _glyph(rng: np.random.Generator, chars: str, font_for) -> torch.Tensor:
    """One character of ``chars`` at a random size (16-23 px), offset (+-2 px), stroke (0-1)
    and tilt (+-10 degrees), centred in 28x28: uint8 ``[1, 28, 28]``."""
    font = font_for(int(rng.integers(16, 24)))
    image = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(image)
    char = chars[rng.integers(len(chars))]
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (28 - (right - left)) / 2 - left + rng.integers(-2, 3)
    y = (28 - (bottom - top)) / 2 - top + rng.integers(-2, 3)
    draw.text((x, y), char, fill=255, font=font, stroke_width=int(rng.integers(0, 2)),
              stroke_fill=255)
    image = image.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy())[None]


# Symbols for outlier exposure: Greek, Cyrillic, Latin-extended letters, arrows and maths (no
# digits of any script: other scripts' digits are real outlier sets that judge the result).
# Shapes a digit could take (O, I, S, Z, B, theta, be, ze, che...) are left out: exposure must
# not push the model's likelihood down on digits.
SYMBOLS = ("ΓΔΛΞΠΣΦΨΩαβγελμξπσφψωБГДЖИЛПФЦШЩЫЭЮЯвгджлпфцшщыэюя"
           "ÆŒÞðþŋ←↑→↓↔↕⇐⇒∀∃∇∈∏∑√∞∠∧∨∩∪∫≈≠≡≤≥⊂⊃⊕⊗⊥⋆★☆♠♣♥♦♪♫")
EXPOSURE_LETTERS = "ACEFHJKLMNPRTUVWXYadefhkmnprtuvwxy"  # LETTERS less the digit-like ones


def rendered_symbols(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[n, 1, 28, 28]`` white symbols on black (``SYMBOLS``), MNIST-like framing, in the
    system's TrueType fonts (Pillow's own where there are none): a glyph source for outlier
    exposure that shares no set with the real outliers that judge it."""
    rng = np.random.default_rng(seed + 23)
    fonts = sorted(p for d in FONT_DIRS for p in Path(d).rglob("*.ttf"))

    def font_for(size: int) -> ImageFont.FreeTypeFont:
        return (ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size) if fonts
                else ImageFont.load_default(size=size))

    return torch.stack([_glyph(rng, SYMBOLS, font_for) for _ in range(n)])


def exposure_outliers(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` synthetic outliers for outlier exposure, a third each of rendered letters (the
    ones no digit resembles), symbols and scribbles, shuffled: uint8 ``[n, 1, 28, 28]``."""
    third = -(-n // 3)
    pool = torch.cat([rendered_letters(third, seed, EXPOSURE_LETTERS),
                      rendered_symbols(third, seed),
                      scribbles(third, seed)])
    return pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]


def scribbles(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[n, 1, 28, 28]`` random pen strokes in the MNIST frame: 1-3 smooth polylines of
    3-6 points, 2-3 px wide, slightly blurred. Added after the default score was chosen, as a
    set that played no part in choosing it."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for _ in range(n):
        image = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            points = [tuple(float(v) for v in rng.uniform(4, 24, 2))
                      for _ in range(int(rng.integers(3, 7)))]
            draw.line(points, fill=255, width=int(rng.integers(2, 4)), joint="curve")
        image = image.filter(ImageFilter.GaussianBlur(0.6))
        out.append(torch.from_numpy(np.asarray(image).copy())[None])
    return torch.stack(out)
