"""Input normalization: meet real uploads halfway before a model sees them.

A model trained on MNIST has seen white strokes on an exactly black background, fitted into
20x20 and centred by mass; a scan, a photo or a drawing is none of those. ``prepare`` brings an
upload into the dataset's own conventions, records what it did (the app shows it), and keeps the
geometry so that ``Framing.restore`` can paste a fill back into the user's frame and polarity.

Steps, each recorded when it changes something:

1. polarity (datasets of light content on black): a light background (median of the outermost
   pixel ring above mid-grey) is inverted;
2. background (the same datasets): on an upload not at the model's size (a photo or a scan),
   a page lit unevenly (light fall-off, vignetting: a smooth page surface spanning
   ``UNEVEN_LEVELS`` or more) is flattened (``page_surface``, ``Framing.flatten``); then the
   ring's median is subtracted, so a grey page becomes black; object recipes (Fashion-MNIST)
   keep only the photo's largest object (``_isolate_object``), ink recipes (MNIST) drop the
   specks of page left beside the strokes (``_drop_specks``);
3. framing, by the dataset's recipe (``RECIPES``):
   - ``mnist`` (LeCun et al. 1998): content fitted into 20x20 with its aspect kept, then placed so
     that its centre of mass is the centre of the 28x28 field;
   - ``fashion-mnist`` (Xiao et al. 2017): content trimmed, longest edge resized to 28, centred;
   - ``resize``: a plain resize to the model's size (datasets without a known recipe).
   An image already at the model's size is only re-centred (by an integer shift), never resampled;
4. white level (``mnist`` only): ink whose upper quartile is below ``WHITE_LEVEL`` (a faded
   scan, a low-contrast photo) is stretched up to it. (A black level, clearing faint pixels, was
   measured and left out: it halves the flags on JPEG and resampled uploads but lowers the
   verdict's AUROC against rendered letters from 0.97 to 0.93; docs/anomaly.md.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from .images import Resize, describe_fit, to_8bit, to_model_input

# A page whose fitted surface spans fewer grey levels than this counts as evenly lit (its ring's
# median is subtracted, as always); from this range on the page is flattened.
UNEVEN_LEVELS = 12
PAGE_FIT_SIDE = 64  # the page surface is fitted on a copy at most this many pixels a side
WHITE_LEVEL = 250  # MNIST: the upper quartile of its ink is 250 (strokes saturate in their core)
INK_LEVEL = 24  # pixels above this count as ink for the white level (~10 % of full scale)
SPECK_SHARE = 0.1  # content regions smaller than this share of the largest are page specks
SPECK_SIDE = 200  # the regions are found on a block-mean copy at most this many pixels a side


@dataclass(frozen=True)
class Recipe:
    """How a dataset frames its content: box (longest edge), centring rule, white level."""

    name: str
    box: int | None  # longest content edge in model pixels; None: plain resize
    centre: str = "box"  # "mass" (centre of mass) or "box" (bounding box centre)
    content_level: float = 0.15  # share of the brightest pixel that counts as content (box)
    white_level: int = 0  # the ink's upper quartile is stretched up to this level (0: off)
    dark_background: bool = True  # the data is light content on black: polarity and page level
    # Keep only the largest object of a photo (object recipes: a garment on a floor, a hanger).
    isolate_object: bool = False
    # Drop the page's specks around the strokes of a photo or scan (ink recipes: digits).
    drop_specks: bool = False

    def settings(self) -> dict[str, object]:
        """Every parameter, for a calibration to record: a recipe whose parameters change
        after a model was calibrated makes its thresholds stale (``ModelBundle.stale_note``)."""
        return asdict(self)


RECIPES = {"mnist": Recipe("mnist", box=20, centre="mass", content_level=0.2,
                         white_level=WHITE_LEVEL, drop_specks=True),
           # 15 % (the default), not 5 %: JPEG ringing around an item reaches 5-10 % of its
           # brightest pixel; at 5 % it widened the box and shifted the item (JPEG q75 flags
           # 14.2 % -> 9.9 %, docs/anomaly.md)
           "fashion-mnist": Recipe("fashion-mnist", box=28, centre="box", isolate_object=True),
           "resize": Recipe("resize", box=None, dark_background=False),
           # a folder of dark-background content (or light, inverted at training): plain resize
           # with the polarity and background-level steps
           "resize-dark": Recipe("resize-dark", box=None)}
DATASET_RECIPES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}


def recipe_for(dataset: str | None, recipe: str | None = None) -> Recipe:
    """The framing recipe named ``recipe`` (a card's ``input_recipe``), else that of a model's
    dataset (plain resize when none is known)."""
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown input recipe {recipe!r}: choose one of {sorted(RECIPES)}")
        return RECIPES[recipe]
    return RECIPES[DATASET_RECIPES.get(dataset or "", "resize")]


def as_recipe(recipe_or_dataset: Recipe | str | None) -> Recipe:
    """A Recipe as it is; a string as a recipe name, else as a dataset name (its recipe)."""
    if isinstance(recipe_or_dataset, Recipe):
        return recipe_or_dataset
    return RECIPES.get(recipe_or_dataset or "") or recipe_for(recipe_or_dataset)


@dataclass
class Framing:
    """What ``prepare`` did: the steps in words and the map from the upload to model pixels.

    Model position (u, v) = scale * (x, y) + offset, for upload position (x, y), both in edge
    coordinates (pixel i spans [i, i + 1)).
    """

    size: tuple[int, int]  # the upload's (width, height)
    shape: tuple[int, int]  # the model's (height, width)
    inverted: bool = False
    background: int = 0
    page: tuple[float, ...] | None = None  # the flattened page surface (``page_surface``)
    page_levels: float = 0.0  # the grey levels that surface spans
    grain: float = 0.0  # the page's noise, a standard deviation in grey levels
    content_edge: int = 0  # the content's longest edge in upload pixels
    gain: float = 1.0
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    steps: list[str] = field(default_factory=list)

    def flatten(self, array: np.ndarray, undo: bool = False) -> np.ndarray:
        """Take the uneven page light (``page``) out of ``array`` (in the model's polarity), or
        with ``undo`` put it back. Light reflected by a light page is multiplicative: the
        upload is divided by the page's light and scaled to its brightest point, so ink on the
        dim side keeps its contrast. A dark page's glow is additive: it is subtracted."""
        level = surface(self.page, self.size)
        if not self.inverted:
            return np.clip(array + level if undo else array - level, 0, 255)
        light = np.clip(255.0 - level, 1.0, 255.0)  # the page's light in the upload's polarity
        gain = light.max() / light
        photo = 255.0 - array
        photo = photo / gain if undo else photo * gain
        return np.clip(255.0 - photo, 0, 255)

    def describe(self) -> str:
        return "; ".join(self.steps) if self.steps else "unchanged"

    def _affine(self) -> tuple[float, ...]:
        """PIL's AFFINE data mapping an upload pixel to the model pixel it came from. Pillow
        applies it to output pixel centres and reads the input in edge coordinates (pixel i
        spans [i, i + 1)), the convention ``scale`` and ``offset`` are in, so they go as they
        are (a half-pixel correction here moved fills half a model pixel down and right)."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return (sx, 0.0, ox, 0.0, sy, oy)

    def to_model_mask(self, mask: np.ndarray) -> torch.Tensor:
        """A bool ``[H, W]`` mask in the upload's frame, in model pixels (a model pixel is
        missing when a quarter of it is)."""
        height, width = self.shape
        inverse = _inverse(self._affine())
        image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
        moved = image.transform((width, height), Image.Transform.AFFINE, inverse,
                                resample=Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(moved) >= 64)

    def to_upload_mask(self, mask: torch.Tensor) -> np.ndarray:
        """A bool model-space mask in the upload's frame (nearest model pixel)."""
        image = Image.fromarray(mask.numpy().astype(np.uint8) * 255)
        moved = image.transform(self.size, Image.Transform.AFFINE, self._affine(),
                                resample=Image.Resampling.NEAREST)
        return np.asarray(moved) >= 128

    def restore(self, completed: torch.Tensor, upload: Image.Image, mask: np.ndarray
                ) -> Image.Image:
        """The upload (grayscale) with its ``mask`` pixels taken from the model-space image
        ``completed`` (uint8 ``[1, H, W]``), mapped back into the upload's frame and polarity."""
        model = Image.fromarray(completed[0].numpy())
        back = np.asarray(model.transform(self.size, Image.Transform.AFFINE, self._affine(),
                                          resample=Image.Resampling.BICUBIC), dtype=np.float64)
        back = np.clip(back / self.gain + self.background, 0, 255)
        if self.page is not None:
            back = self.flatten(back, undo=True)
        if self.inverted:
            back = 255.0 - back
        original = np.asarray(to_8bit(upload, 1), dtype=np.float64)
        out = np.where(mask, back, original)
        return Image.fromarray((out + 0.5).clip(0, 255).astype(np.uint8))


def _inverse(affine: tuple[float, ...]) -> tuple[float, ...]:
    a, b, c, d, e, f = affine
    return (1 / a, 0.0, -c / a, 0.0, 1 / e, -f / e) if b == 0 and d == 0 else affine


def outer_ring(array: np.ndarray) -> np.ndarray:
    """The outermost pixel ring of a 2-D array."""
    if min(array.shape) < 3:
        return array.ravel()
    return np.concatenate([array[0], array[-1], array[1:-1, 0], array[1:-1, -1]])


def _quadratic_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The six terms of a quadratic surface at page coordinates in [-1, 1]."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _page_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a (width, height) page, scaled to [-1, 1]."""
    width, height = size
    x = (np.arange(width) + 0.5) / width * 2 - 1
    y = (np.arange(height) + 0.5) / height * 2 - 1
    return np.meshgrid(x, y)


def surface(page: tuple[float, ...], size: tuple[int, int]) -> np.ndarray:
    """The page surface ``page`` (``page_surface``'s coefficients) on a (width, height) grid."""
    return _quadratic_terms(*_page_grid(size)) @ np.asarray(page)


def page_surface(array: np.ndarray, iterations: int = 5
                 ) -> tuple[tuple[float, ...], float] | None:
    """The light on the page under light content (an inverted photo or scan), as a quadratic
    surface fitted to the page pixels, and the grey levels it spans; None when it spans fewer
    than ``UNEVEN_LEVELS`` (an evenly lit page). A quadratic follows a fall-off across the
    page and a vignette, and cannot follow a stroke, so the content never leaks into it. Page
    pixels are found robustly: the darker half first, then every pixel within 2.5 robust
    deviations of the fit (ink lies above it). The fit runs on a copy at most
    ``PAGE_FIT_SIDE`` pixels a side."""
    small = Image.fromarray(array.astype(np.float32), mode="F")
    factor = PAGE_FIT_SIDE / max(small.size)
    if factor < 1:
        small = small.resize((max(2, round(small.width * factor)),
                              max(2, round(small.height * factor))), Image.Resampling.BOX)
    values = np.asarray(small, dtype=np.float64).ravel()
    terms = _quadratic_terms(*(g.ravel() for g in _page_grid(small.size)))
    on_page = values <= np.median(values)
    for _ in range(iterations):
        if on_page.sum() < terms.shape[1] * 2:
            return None
        coef = np.linalg.lstsq(terms[on_page], values[on_page], rcond=None)[0]
        residual = values - terms @ coef
        spread = 1.4826 * np.median(np.abs(residual[on_page])) + 1.0
        on_page = residual < 2.5 * spread
    spans = float(np.ptp(surface(tuple(coef), (array.shape[1], array.shape[0]))))
    return (tuple(float(c) for c in coef), spans) if spans >= UNEVEN_LEVELS else None


def prepare(image: Image.Image, image_shape: tuple[int, int, int], recipe: Recipe | str
            ) -> tuple[torch.Tensor, Framing]:
    """uint8 ``[1, H, W]`` model input from a grayscale-convertible upload, and its ``Framing``.

    Only single-channel models are normalized; for others use ``images.to_model_input``.
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    channels, height, width = image_shape
    if channels != 1:
        raise ValueError("input normalization handles grayscale models only")
    array = np.asarray(to_8bit(image, 1), dtype=np.float64)
    framing = Framing(size=(array.shape[1], array.shape[0]), shape=(height, width))
    if recipe.dark_background and np.median(outer_ring(array)) > 127:
        array = 255.0 - array
        framing.inverted = True
        framing.steps.append("light background: inverted")
    # An upload at the model's own size is a digital image of the dataset's kind: its page is
    # neither flattened nor isolated (a garment touching the border is not a page).
    photo = recipe.dark_background and array.shape != (height, width)
    fitted = page_surface(array) if photo else None
    if fitted is not None:
        framing.page, framing.page_levels = fitted
        array = framing.flatten(array)
        framing.steps.append(f"uneven page flattened (its light spans "
                             f"{framing.page_levels:.0f} grey levels)")
    grain = _page_grain(array) if photo else 0.0
    background = int(np.median(outer_ring(array))) if recipe.dark_background else 0
    if background > 0:
        array = np.clip(array - background, 0, None)
        framing.background = background
        framing.steps.append(f"background level {background} subtracted")
    framing.grain = grain  # a capture fact; clearing the grain raised the flag rate (docs)
    if photo and recipe.isolate_object:
        array = _isolate_object(array, framing)
    if photo and recipe.drop_specks:
        array = _drop_specks(array, recipe.content_level, framing)
    placed = _frame(array, recipe, framing)
    if recipe.white_level:
        ink = placed[placed > INK_LEVEL]
        upper = np.quantile(ink, 0.75) if ink.size else 0.0
        if 0 < upper < recipe.white_level:
            placed = placed * (recipe.white_level / upper)
            framing.gain = recipe.white_level / upper
            framing.steps.append(f"contrast x{framing.gain:.2f} (ink's upper quartile "
                                 f"{upper:.0f} -> {recipe.white_level})")
    out = np.clip(placed + 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)[None], framing


def _isolate_object(array: np.ndarray, framing: Framing) -> np.ndarray:
    """The largest object of a photo on a dark page (after polarity and page steps), with its
    holes filled, and the rest of the page set to black: a garment photographed on a floor or a
    bed keeps no floor texture around it. The object is what stands above Otsu's threshold of
    a lightly smoothed copy, less a margin, as one connected region."""
    from scipy import ndimage
    from skimage import filters, measure, morphology

    sigma = max(array.shape) / 150  # about 3 px on a 400 px photo: texture, not outline
    smooth = filters.gaussian(array, sigma=sigma, preserve_range=True)
    if smooth.max() <= smooth.min():
        return array
    labels = measure.label(smooth > 0.5 * filters.threshold_otsu(smooth))
    if labels.max() == 0:
        return array
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept = ndimage.binary_fill_holes(labels == sizes.argmax())
    kept = morphology.dilation(kept, morphology.disk(max(1, round(sigma))))
    framing.steps.append(f"object isolated ({kept.mean():.0%} of the page kept)")
    return np.where(kept, array, 0.0)


def _drop_specks(array: np.ndarray, level: float, framing: Framing) -> np.ndarray:
    """The photo with only its strokes: content regions (above ``level`` of the brightest block
    mean, 8-connected, on a copy at most ``SPECK_SIDE`` px a side) smaller than ``SPECK_SHARE``
    of the largest are set to black, with everything away from the kept ones. A shadow, a grid
    crossing or a smudge far from the digit otherwise widens the content box and shrinks the
    digit (real phone photos of digits: 53.0 % -> 40.2 % flagged; docs/anomaly.md)."""
    from skimage import measure, morphology

    height, width = array.shape
    factor = max(1, min(int(np.ceil(max(height, width) / SPECK_SIDE)), height, width))
    small = array[:height - height % factor, :width - width % factor]
    if factor > 1:
        small = small.reshape(small.shape[0] // factor, factor, small.shape[1] // factor,
                              factor).mean(axis=(1, 3))
    if small.max() <= 0:
        return array
    labels = measure.label(small > level * small.max(), connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    kept_labels = np.nonzero(sizes >= SPECK_SHARE * sizes.max())[0]
    if len(kept_labels) == labels.max():
        return array
    kept = morphology.dilation(np.isin(labels, kept_labels), morphology.disk(2))
    kept = np.kron(kept, np.ones((factor, factor), dtype=bool))
    # the few rows and columns the block means left out follow their neighbours
    full = np.pad(kept, ((0, height - kept.shape[0]), (0, width - kept.shape[1])), mode="edge")
    dropped = labels.max() - len(kept_labels)
    framing.steps.append(f"{dropped} speck{'' if dropped == 1 else 's'} of page dropped")
    return np.where(full, array, 0.0)


def _page_grain(array: np.ndarray) -> float:
    """The page's noise: its outer ring's median absolute deviation, as a standard deviation
    (0 for a digital page, whose ring is one level)."""
    ring = outer_ring(array)
    return 1.4826 * float(np.median(np.abs(ring - np.median(ring))))


def _content_box(array: np.ndarray, level: float) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the pixels above ``level`` of the maximum."""
    top = array.max()
    if top <= 0:
        return None
    ys, xs = np.nonzero(array > level * top)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _frame(array: np.ndarray, recipe: Recipe, framing: Framing) -> np.ndarray:
    """The content placed in the model's field by ``recipe``; sets the framing's map."""
    height, width = framing.shape
    same_size = array.shape == (height, width)
    box = _content_box(array, recipe.content_level)
    if box is not None:
        framing.content_edge = max(box[2] - box[0], box[3] - box[1])
    if recipe.box is None or box is None:
        if same_size:
            return array
        resized = Image.fromarray(array.astype(np.float32), mode="F").resize(
            (width, height), Image.Resampling.LANCZOS)
        framing.scale = (width / array.shape[1], height / array.shape[0])
        framing.steps.append(f"resized to {width}x{height}")
        return np.asarray(resized, dtype=np.float64).clip(0, 255)
    if same_size:
        content, scale = array, 1.0
    else:
        x0, y0, x1, y1 = box
        scale = recipe.box / max(x1 - x0, y1 - y0)
        crop = Image.fromarray(array[y0:y1, x0:x1].astype(np.float32), mode="F")
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        content = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
        content = content.clip(0, 255)
        framing.steps.append(f"content {x1 - x0}x{y1 - y0} fitted into {size[0]}x{size[1]}")
        array, box = content, (0, 0, size[0], size[1])
        framing.scale = (size[0] / (x1 - x0), size[1] / (y1 - y0))
        framing.offset = (-x0 * framing.scale[0], -y0 * framing.scale[1])
    cx, cy = _centre(content, box, recipe.centre)
    # Where each dataset puts that point, in pixel indices: MNIST's mean centre of mass is
    # (14.0, 14.0) on its test set; Fashion-MNIST's boxes are centred at 13.5.
    target_x, target_y = (width / 2, height / 2) if recipe.centre == "mass" else (
        (width - 1) / 2, (height - 1) / 2)
    shift_x, shift_y = int(np.floor(target_x - cx + 0.5)), int(np.floor(target_y - cy + 0.5))
    placed = np.zeros((height, width))
    _paste(placed, content, shift_x, shift_y)
    framing.offset = (framing.offset[0] + shift_x, framing.offset[1] + shift_y)
    if same_size and (shift_x or shift_y):
        framing.steps.append(f"content re-centred by {recipe.centre} (shifted {shift_x:+d}, "
                             f"{shift_y:+d} px)")
    elif not same_size:
        framing.steps.append(f"centred by {recipe.centre} in {width}x{height}")
    return placed


def _centre(array: np.ndarray, box: tuple[int, int, int, int], rule: str) -> tuple[float, float]:
    """The point to put at the field's centre: centre of mass, or the content box's centre."""
    if rule == "mass" and array.sum() > 0:
        ys, xs = np.indices(array.shape)
        total = array.sum()
        return float((xs * array).sum() / total), float((ys * array).sum() / total)
    x0, y0, x1, y1 = box
    return (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2


def _paste(field_: np.ndarray, content: np.ndarray, dx: int, dy: int) -> None:
    """Copy ``content`` into ``field_`` shifted by (dx, dy), clipping what falls outside."""
    h, w = content.shape
    fh, fw = field_.shape
    ys, xs = slice(max(0, dy), min(fh, h + dy)), slice(max(0, dx), min(fw, w + dx))
    field_[ys, xs] = content[ys.start - dy:ys.stop - dy, xs.start - dx:xs.stop - dx]


def fit_input(image: Image.Image, image_shape: tuple[int, int, int],
              recipe: Recipe | str | None, normalize: bool = True
              ) -> tuple[torch.Tensor, Framing | None, str]:
    """The one path from an upload to a model's input (app, batch scripts, API): the input
    normalization ``recipe`` (a bundle's ``recipe``, or a dataset name) for grayscale models
    when ``normalize``, else the plain fit (``images.to_model_input``). Returns the input, the
    framing (None for the plain fit) and a line saying what was done."""
    if normalize and image_shape[0] == 1:
        recipe = as_recipe(recipe)
        x, framing = prepare(image, image_shape, recipe)
        mode = "" if image.mode == "L" else ", converted to grayscale"
        return x, framing, (f"{image.width}x{image.height} {image.mode}{mode}; "
                            f"{recipe.name} normalization: {framing.describe()}")
    return to_model_input(image, image_shape), None, describe_fit(image, image_shape)


def fit_for_fill(image: Image.Image, image_shape: tuple[int, int, int],
                 recipe: Recipe | str | None, normalize: bool = True
                 ) -> tuple[torch.Tensor, Framing | Resize | None, str]:
    """``fit_input`` for inpainting: with ``normalize`` on, a colour model (which has no input
    normalization) gets the plain resize as its framing, so its fill too goes back into the
    upload's own frame. None only when the user turned normalization off."""
    x, framing, note = fit_input(image, image_shape, recipe, normalize)
    if framing is None and normalize:
        framing = Resize(image.size, image_shape[1:])
    return x, framing, note


def normalize_images(images: torch.Tensor, recipe: Recipe | str | None) -> torch.Tensor:
    """The input normalization of uint8 ``[N, 1, H, W]`` images at the model's size (e.g. the
    validation split that calibrates thresholds for normalized uploads); ``recipe`` as in
    ``fit_input``."""
    recipe = as_recipe(recipe)
    shape = tuple(images.shape[1:])
    return torch.stack([prepare(Image.fromarray(x[0].numpy()), shape, recipe)[0]
                        for x in images]) if len(images) else images
