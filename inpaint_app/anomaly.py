"""Anomaly scores from a flow's bits/dim, calibrated on in-distribution validation images.

Scores (higher = more anomalous for every one):

- ``bpd``: the model's bits/dim, the mission's one-sided score;
- ``typicality``: ``|bpd - c|`` with ``c`` the validation mean, two-sided in bits/dim (Nalisnick et
  al. 2019b, arXiv:1906.02994);
- ``complexity``: bits/dim minus the PNG bits/dim of the same 8-bit image, i.e. what the flow knows
  beyond a generic lossless compressor (Serra et al. 2020, arXiv:1909.11480);
- ``orientation``: bits/dim minus the lowest bits/dim of the image turned by 90, 180 or 270
  degrees (180 only for non-square images). Upright data is likelier than its turned copies, so a
  positive value says "this looks like a turned version of something the model knows"; image
  complexity cancels, since a turn keeps every local statistic;
- ``combined``: the largest two-sided, robustly scaled deviation from the validation medians of
  ``bpd``, ``complexity``, the PNG bits/dim and the latent energy of the fine and coarse halves
  of z. Raw likelihood tracks image complexity (Nalisnick et al. 2019, arXiv:1810.09136):
  one-sided scores trade one failure for another; this one needs all the evidence to look usual.
- ``evidence`` (the default): how far ``complexity``, the distance to
  the nearest training exemplar in pixels and in shape (mean squared difference, the latter of
  blurred unit-length images; data, not the flow; when the checkpoint ships an exemplar bank)
  and the ``likelihood_ratio`` (when it ships a background model) lie above their validation
  medians, each in units of its median-to-99 % spread (a lower quantile for small validation
  sets: ``spread_quantile``): the sum of log(1 + excess) of the parts (``detector.COMBINE``;
  calibrations before 0.29.0 summed the excesses). A soft "or" that asks for agreement: one
  strong signal flags, weak ones add up, and one part's extreme value counts less than parts
  that agree, since a real capture can push a single part far. A calibration may sum fewer
  of these parts (``calibrate(parts=...)``). Orientation is a score,
  not a part: summed, it raised the flag rate of real captured digits and garments more than
  it helped against real outliers, on both models (benchmarks/realworld-ablation-*.md).

With a capture model beside the checkpoint (``capture.pt``: the same kind of flow trained on
captured copies as well, ``pipelines.train --capture``), the evidence's flow parts are read from
it for every image, so a scanned or photographed image is not flagged for its capture alone.
Bits/dim and every other score stay the main model's (docs/anomaly.md).

The likelihood ratio is bits/dim minus the bits/dim of a background model (``background.pt``
beside the checkpoint): a small flow trained on the same data with 10 % of its pixels replaced by
noise (Ren et al. 2019, arXiv:1906.02845), which learns the local statistics (stroke width,
blank backgrounds) but not the shapes. Dividing it out leaves what the main model knows about
the data's content, which is what an unseen set of simple images lacks.

Scoring is deterministic: every image is dequantized with the same fixed-seed noise pattern, so an
image scores the same alone or in any batch. ``calibrate`` sets thresholds at a target
false-positive rate on validation images and keeps a compact tail of their scores for empirical
p-values; the result is stored as ``card["anomaly"]`` (see ``pipelines.calibrate``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from PIL import Image

from .anomaly_map import anomaly_map  # noqa: F401
from .bundle import ModelBundle, as_bundle
from .capture_axis import capture_verdict, facts_of_inputs
from .compiled import scorer_for
from .density import DensityModel, bits_per_dim_from_log_prob, dequantize
from .detector import DetectorSpec, detector_of
from .exemplars import ExemplarBank
from .spreads import spread_quantile

SCORES: tuple[str, ...] = ("bpd", "typicality", "complexity", "orientation", "combined",
                           "evidence")
DEFAULT_SCORE = "evidence"  # best worst-case AUROC in benchmarks/ood.md
NEEDS_CALIBRATION = ("typicality", "combined", "evidence")
COMBINED_PARTS = ("bpd", "complexity", "png_bpd", "z_fine", "z_coarse")
# Every part the evidence can sum; a calibration sums the default parts or those it is told
# (``calibrate(parts=...)``; the shipped Fashion-MNIST one leaves the likelihood ratio out).
EVIDENCE_PARTS = ("complexity", "exemplar_distance", "exemplar_shape", "likelihood_ratio")
# What a calibration sums unless told otherwise (those the bundle has). The shipped MNIST
# calibration names the shape distance in place of the pixel distance, chosen on the real-world
# corpus (benchmarks/realworld-ablation-*.md).
DEFAULT_PARTS = ("complexity", "exemplar_distance", "likelihood_ratio")
SEED = 0
# Images per flow pass group: each pass holds them and their three quarter turns (4 x 32).
# Small batches stay in cache: on 2 CPU threads a Glow pass runs about 1.5x faster at
# 32-128 images than at 1,024 (docs/performance.md, 2026-11-26).
VERDICT_BATCH = 32
# Images per exemplar-search matmul: each group reads the whole bank (20,000 x 784 floats for
# MNIST) once; groups of 128 ran it at about 235 GFLOP/s, groups of 32 at 150 (2026-11-26).
EXEMPLAR_BATCH = 128
TAIL_POINTS = 240
HISTOGRAM_BINS = 40


# What each evidence part asks, in words for the app (``explain``).
PART_WORDS = {
    "complexity": "how many more bits the flow needs than a generic PNG compressor",
    "likelihood_ratio": "how many more bits the flow needs than a background model of local "
                        "pixel statistics",
    "exemplar_distance": "how far it is, pixel by pixel, from the nearest training example",
    "exemplar_shape": "how far its coarse shape (blurred, at any contrast) is from the nearest "
                      "training example's",
}


def explain(calibration: dict[str, Any] | None = None) -> str:
    """Two sentences for the app: why bits/dim alone misleads and which evidence the flag adds
    up (the calibration's parts; without one, the default parts)."""
    detector = detector_of(calibration)
    parts = list(detector.spec.parts) if detector is not None else []
    words = [PART_WORDS[p] for p in parts or DEFAULT_PARTS if p in PART_WORDS]
    listed = (words[0] if len(words) == 1 else f"{words[0]} and {words[1]}" if len(words) == 2
              else f"{', '.join(words[:-1])}, and {words[-1]}")
    return ("Bits/dim alone can mislead: a flow gives simple images (blank backgrounds, thin "
            "digits) high likelihood even when it never saw anything like them, so a model "
            "trained on Fashion-MNIST scores MNIST digits as more typical than its own clothes. "
            f"The flag therefore adds up evidence that does not depend on simplicity: {listed}."
            + (" Those bits come from a flow that also learned captured copies (binarized, low "
               "resolution, JPEG, blurred, resized), so a scanned or photographed image is not "
               "flagged for its capture alone."
               if detector is not None and detector.spec.flow == "capture" else ""))


def png_bits_per_dim(image: torch.Tensor) -> float:
    """Lossless PNG size of a uint8 ``[C, H, W]`` image in bits per dimension (Pillow, highest
    compression level with optimisation; the whole file, headers included)."""
    array = image.detach().cpu().numpy()
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=9,
                                                      optimize=True)
    return 8.0 * len(buffer.getvalue()) / image.numel()


def base_scores(model: ModelBundle | DensityModel, images: torch.Tensor, *,
                batch_size: int = VERDICT_BATCH, seed: int = SEED, progress: bool = False,
                needs: Collection[str] | None = None, capture: bool | None = None
                ) -> dict[str, np.ndarray]:
    """Per-image evidence for uint8 ``[B, C, H, W]`` images at the model's shape: ``bpd``,
    ``png_bpd``, ``complexity`` and the mean latent energy ``z^2 / 2`` of the first (``z_fine``)
    and second (``z_coarse``) half of z, which for a multi-scale flow are the finest factored-out
    level and the coarser rest; ``orientation``; with an exemplar bank, ``exemplar_distance`` and
    ``exemplar_shape``; with a background model, ``likelihood_ratio`` (bits/dim minus the
    background's bits/dim). With a capture model and ``capture`` (None: whenever the bundle has
    one), ``capture_bpd`` and ``capture_<part>`` of each flow part, from that model. A
    non-finite value (a numerical blow-up) becomes ``+inf``. ``model`` is a bundle or a bare
    ``DensityModel``. ``needs``: the evidence parts a verdict reads (``verdict_needs``); the
    quarter turns, the background pass and the exemplar search run only when a needed part
    reads them (None: everything there is)."""
    bundle = as_bundle(model)
    model = bundle.model
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != model.image_shape:
        shape = ", ".join(map(str, model.image_shape))
        raise ValueError(f"expected uint8 images of shape [B, {shape}], got {images.dtype} "
                         f"{tuple(images.shape)}")
    turns = needs is None or "orientation" in needs
    flows = {"": model}
    if bundle.capture is not None and capture is not False:
        # On the main model's device, so every pass shares one placement.
        flows["capture_"] = bundle.capture.to(next(model.parameters()).device)
    out: dict[str, np.ndarray] = {}
    for prefix, flow in flows.items():  # orientation is a score of the main model only
        out.update({prefix + k: v for k, v in _flow_parts(
            flow, images, batch_size, seed, progress, turns and not prefix).items()})
    # zlib releases the GIL: PNG sizes of many images compress side by side.
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        out["png_bpd"] = np.fromiter(pool.map(png_bits_per_dim, images), dtype=np.float64,
                                     count=len(images))
    if bundle.background is not None and (needs is None or "likelihood_ratio" in needs):
        background = bundle.background.to(next(model.parameters()).device)
        background_bpd = _flow_parts(background, images, batch_size, seed, False, False)["bpd"]
        for prefix in flows:  # one background pass, divided out of each flow
            out[f"{prefix}likelihood_ratio"] = out[f"{prefix}bpd"] - background_bpd
    for prefix in flows:
        out[f"{prefix}complexity"] = out[f"{prefix}bpd"] - out["png_bpd"]
    if bundle.exemplars is not None and (needs is None or "exemplar_distance" in needs):
        out["exemplar_distance"] = _exemplar_distance(bundle.exemplars, images)
    if bundle.exemplars is not None and (needs is None or "exemplar_shape" in needs):
        out["exemplar_shape"] = _exemplar_distance(bundle.exemplars, images, shape=True)
    return out


def _flow_parts(model: DensityModel, images: torch.Tensor, batch_size: int, seed: int,
                progress: bool, orientation: bool = True) -> dict[str, np.ndarray]:
    """``bpd``, ``z_fine``, ``z_coarse`` and, with ``orientation``, that part (three more
    images a pass: the quarter turns) of ``images`` under ``model`` (``base_scores``)."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {"bpd": [], "z_fine": [], "z_coarse": []}
    if orientation:
        parts["orientation"] = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(images), batch_size), disable=not progress,
                          desc="score", unit="batch"):
            batch = images[start:start + batch_size].to(device)
            # The image and its quarter turns in one flow pass (one large batch beats four).
            turns = _turns(batch) if orientation else ()
            stacked = torch.cat([batch, *(torch.rot90(batch, k, (2, 3)) for k in turns)])
            z, bpd = _latent_and_bpd(model, stacked, seed)
            n = len(batch)
            z, bpd, turned = z[:n], bpd[:n], bpd[n:].view(len(turns), n)
            parts["bpd"].append(bpd)
            if orientation:
                parts["orientation"].append(bpd - turned.min(0).values)
            energy = 0.5 * z.reshape(len(z), -1).double() ** 2
            half = energy.shape[1] // 2
            parts["z_fine"].append(energy[:, :half].mean(1))
            parts["z_coarse"].append(energy[:, half:].mean(1))
    out = {}
    for name, chunks in parts.items():
        values = torch.cat(chunks).double().cpu().numpy() if chunks else np.zeros(0)
        out[name] = np.where(np.isfinite(values), values, np.inf)
    return out


def _latent_and_bpd(model: DensityModel, images: torch.Tensor, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """z and bits/dim, dequantized with the fixed pattern of ``seed`` shared by every image;
    through the compiled pass once one is warm (``inpaint_app.compiled``), else eagerly."""
    z, log_prob = scorer_for(model)(dequantize(images, noise="fixed", seed=seed))
    return z, bits_per_dim_from_log_prob(log_prob, model.dim)


def _turns(images: torch.Tensor) -> tuple[int, ...]:
    """Quarter turns that keep the shape: 90, 180, 270 degrees for square images, else 180."""
    return (1, 2, 3) if images.shape[2] == images.shape[3] else (2,)


def _exemplar_distance(bank: ExemplarBank, images: torch.Tensor, shape: bool = False
                       ) -> np.ndarray:
    """Mean squared pixel difference ([0, 1] units) to the nearest exemplar of the bank, or
    with ``shape`` the distance in shape (``ExemplarBank.nearest_shape_distance``)."""
    nearest = bank.nearest_shape_distance if shape else bank.nearest_distance
    out = [nearest(batch.float() / 255.0) for batch in images.split(EXEMPLAR_BATCH)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def _deviation(values: np.ndarray, part: dict[str, float]) -> np.ndarray:
    """Two-sided distance from the validation median, in units of the median-to-1 % (below) or
    median-to-99 % (above) spread (``spread_quantile``), so a skewed score is scaled fairly on
    each side."""
    above = (values - part["median"]) / part["spread_above"]
    below = (part["median"] - values) / part["spread_below"]
    return np.where(values >= part["median"], above, below)


def scores_from_base(base: dict[str, np.ndarray], calibration: dict[str, Any] | None
                ) -> dict[str, np.ndarray | None]:
    """Every named score; those that need validation statistics are None without calibration."""
    out: dict[str, np.ndarray | None] = {"bpd": base["bpd"], "complexity": base["complexity"],
                                         "orientation": base.get("orientation"),
                                         "typicality": None, "combined": None, "evidence": None}
    if calibration:
        scores = calibration["scores"]
        out["typicality"] = np.abs(base["bpd"] - scores["typicality"]["center"])
        parts = scores["combined"]["parts"]
        out["combined"] = np.max([_deviation(base[name], parts[name]) for name in parts], axis=0)
        detector = detector_of(calibration)  # None for calibrations that predate the evidence
        if detector is not None:
            if detector.spec.flow == "capture" and "capture_bpd" not in base:
                raise ValueError("the calibration reads the capture model, which this model "
                                 "lacks (is capture.pt missing beside the checkpoint?)")
            missing = {p for p in detector.parts if detector.spec.source(p) not in base}
            if missing:
                raise ValueError(f"the calibration's evidence uses {sorted(missing)}, which "
                                 "this model cannot compute (is its exemplar bank or background "
                                 "model missing beside the checkpoint?)")
            terms = detector.evidence_terms(base)
            out["evidence"] = np.sum(list(terms.values()), axis=0)
            out["evidence_terms"] = terms  # each part's share of it, per image
    return out


def _tail_ranks(n: int) -> np.ndarray:
    """1-based descending ranks kept for p-values: every one of the top 40, then log-spaced."""
    dense = np.arange(1, min(n, 40) + 1)
    sparse = np.unique(np.geomspace(1, n, TAIL_POINTS - len(dense)).round().astype(int))
    return np.unique(np.r_[dense, sparse, n])


def _threshold(values: np.ndarray, fpr: float) -> float:
    """A threshold that flags exactly round(fpr n) validation images (midway between the two
    order statistics around it), so the calibration set's false-positive rate is hit."""
    ordered = np.sort(values)
    k = int(round(fpr * len(ordered)))
    if k <= 0:
        top = ordered[-1]
        return float(top + max(abs(top) * 1e-6, 1e-9))
    lo, hi = ordered[-k - 1], ordered[-k]
    return float(hi if not np.isfinite(hi) else (lo + hi) / 2.0)


def _part_stats(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    q = spread_quantile(len(finite))
    median, low, high = np.quantile(finite, [0.5, 1.0 - q, q])
    return {"median": float(median), "spread_below": float(max(median - low, 1e-6)),
            "spread_above": float(max(high - median, 1e-6)), "spread_quantile": round(q, 4)}


def _finite(values: np.ndarray) -> list[float]:
    """JSON-safe floats: +inf (a blow-up) stored as 1e30."""
    return [float(v) for v in np.minimum(values, 1e30)]


def _histogram(values: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts of the validation scores; values past the last edge are counted in the last bin."""
    finite = values[np.isfinite(values)]
    top = max(float(np.quantile(finite, 0.995)), threshold * 1.25)
    edges = np.linspace(float(finite.min()), top, HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return {"edges": [round(float(e), 5) for e in edges], "counts": counts.tolist()}


def verdict_needs(calibration: dict[str, Any] | None) -> set[str] | None:
    """The evidence parts a calibrated verdict reads, so
    scoring computes no other; None without a calibration (every part there is)."""
    detector = detector_of(calibration)
    return None if detector is None else detector.spec.needs


def _needs(calibration: dict[str, Any] | None, score: str) -> set[str] | None:
    """What ``score_images`` computes: the verdict's parts and the chosen score itself."""
    needs = verdict_needs(calibration)
    return None if needs is None else needs | {score}


def evidence_parts(calibration: dict[str, Any] | None) -> list[str] | None:
    """The parts a calibration's ``evidence`` was told to sum (``calibrate(parts=...)``); None
    where it took the default."""
    detector = detector_of(calibration)
    return list(detector.spec.parts) if detector is not None and detector.spec.chosen else None


def calibrate(model: ModelBundle | DensityModel, val_images: torch.Tensor, *, fpr: float = 0.05,
              source: str = "mnist val (5,000)", batch_size: int = VERDICT_BATCH,
              progress: bool = False, parts: Sequence[str] | None = None) -> dict[str, Any]:
    """Thresholds at false-positive rate ``fpr`` on ``val_images`` for every score, the tails
    needed for empirical p-values and a histogram of the default score: ``card["anomaly"]``.
    ``parts``: what ``evidence`` sums (default ``DEFAULT_PARTS``, less those the bundle cannot
    compute); each named part must be computable."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    unknown = sorted(set(parts or ()) - set(EVIDENCE_PARTS))
    if unknown:
        raise ValueError(f"unknown evidence parts {unknown}: choose from "
                         f"{', '.join(EVIDENCE_PARTS)}")
    bundle = as_bundle(model)
    lacking = {"exemplar_distance": bundle.exemplars is None,
               "exemplar_shape": bundle.exemplars is None,
               "likelihood_ratio": bundle.background is None}
    missing = sorted(p for p in parts or () if lacking.get(p))
    if missing:  # before scoring: a calibration takes minutes
        raise ValueError(f"evidence parts {missing} need what this model lacks (an exemplar "
                         "bank or a background model beside the checkpoint)")
    base = base_scores(bundle, val_images, batch_size=batch_size, progress=progress)
    # With a capture model, the evidence's flow parts are that model's for every image.
    spec = DetectorSpec(parts=(), flow="model" if bundle.capture is None else "capture")
    chosen = parts or [name for name in DEFAULT_PARTS if spec.source(name) in base]
    finite_bpd = np.sort(base["bpd"][np.isfinite(base["bpd"])])
    trim = len(finite_bpd) // 100  # a few blow-ups must not move the typical-set centre
    center = float(finite_bpd[trim:len(finite_bpd) - trim].mean())
    calibration: dict[str, Any] = {"scores": {
        "typicality": {"center": center},
        "combined": {"parts": {name: _part_stats(base[name]) for name in COMBINED_PARTS}},
        "evidence": {"parts": {name: _part_stats(base[spec.source(name)]) for name in chosen}},
    }}
    if parts:
        calibration["scores"]["evidence"]["chosen_parts"] = list(parts)
    if spec.flow != "model":
        calibration["scores"]["evidence"]["flow"] = spec.flow
    if spec.combine != "sum":
        calibration["scores"]["evidence"]["combine"] = spec.combine
    values = scores_from_base(base, calibration)
    ranks = _tail_ranks(len(val_images))
    tail: dict[str, Any] = {"ranks": ranks.tolist()}
    for name in SCORES:
        threshold = _threshold(values[name], fpr)
        entry = calibration["scores"].setdefault(name, {})
        entry.update({"threshold": threshold,
                      "two_sided": name in ("typicality", "combined"),
                      "val_fpr": float(np.mean(values[name] > threshold))})
        if name == "typicality":
            entry["bpd_interval"] = [center - threshold, center + threshold]
        tail[name] = _finite(np.sort(values[name])[::-1][ranks - 1])
    threshold = calibration["scores"][DEFAULT_SCORE]["threshold"]
    calibration.update({
        "default_score": DEFAULT_SCORE, "fpr": fpr, "source": source, "n": len(val_images),
        "seed": SEED, "tail": tail,
        "histogram": {"score": DEFAULT_SCORE, "threshold": threshold,
                      **_histogram(values[DEFAULT_SCORE], threshold)},
        "method": ("flag = score > threshold (typicality and combined are two-sided in bits/dim); "
                   "p = (1 + #validation scores >= score) / (n + 1), interpolated between kept "
                   "ranks; one fixed-seed dequantization pattern for every image; PNG via Pillow "
                   "compress_level=9, optimize=True"),
        "calibrated": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return {key: calibration[key] for key in ("default_score", "fpr", "source", "n", "scores",
                                               "histogram", "tail", "seed", "method",
                                               "calibrated")}


def p_values(values: np.ndarray, calibration: dict[str, Any], name: str) -> np.ndarray:
    """Empirical upper-tail p-values (1 + #val >= s) / (n + 1) from the kept ranks."""
    n = calibration["n"]
    ranks = np.asarray(calibration["tail"]["ranks"], dtype=np.float64)
    kept = np.asarray(calibration["tail"][name], dtype=np.float64)  # descending
    count = np.interp(-values, -kept, ranks, left=0.0, right=float(n))
    count = np.where(values > kept[0], 0.0, count)
    return (1.0 + count) / (n + 1.0)


def score_images(model: ModelBundle | DensityModel, images: torch.Tensor,
                 calibration: dict[str, Any] | None = None, *, batch_size: int = VERDICT_BATCH,
                 score: str | None = None, captures: Sequence[dict[str, float]] | None = None
                 ) -> list[dict[str, Any]]:
    """One dict per uint8 image at the model's shape: every score, the chosen ``score`` (default:
    the calibration's default), its ``p_value``, ``flag`` and ``threshold``, each evidence part's
    share (``parts``) and the largest in words (``why``, for flagged images); with a calibrated
    capture axis, ``capture_p_value``, ``capture_flag`` and ``capture_why``.

    Without calibration (argument or the bundle's ``card.anomaly``) only ``bpd``,
    ``complexity`` and ``orientation`` exist: ``score`` falls back to ``complexity`` (the best
    of them on benchmarks/ood.md) and ``p_value``/``flag``/``threshold`` are None.
    """
    calibration = calibration or as_bundle(model).calibration
    name = score or (calibration or {}).get("default_score", DEFAULT_SCORE)
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}: choose one of {', '.join(SCORES)}")
    if calibration is None and name in NEEDS_CALIBRATION:
        if score is not None:
            raise ValueError(f"score {name!r} needs a calibrated checkpoint "
                             f"(run python -m pipelines.calibrate CHECKPOINT)")
        name = "complexity"
    detector = detector_of(calibration)
    axis = (calibration or {}).get("capture_axis")
    capture_p = capture_fires = None
    why = [""] * len(images)
    if axis:
        facts = captures if captures is not None else facts_of_inputs(images)
        capture_p, capture_fires, why = capture_verdict(facts, axis)
    base = base_scores(model, images, batch_size=batch_size, needs=_needs(calibration, name),
                       capture=detector is not None and detector.spec.flow == "capture")
    values = scores_from_base(base, calibration)
    if values[name] is None:
        raise ValueError(f"this checkpoint's calibration has no {name!r} score that this "
                         "version reads (it predates it, routed captured images by a cut "
                         "that 0.28.0 replaced, or scaled the shape distance of an earlier "
                         "version): run flowpaint calibrate CHECKPOINT")
    chosen = values[name]
    p = p_values(chosen, calibration, name) if calibration else None
    threshold = calibration["scores"][name]["threshold"] if calibration else None
    terms = (values.get("evidence_terms") or {}) if name == "evidence" else {}

    def row_flag(i: int) -> bool:
        return threshold is not None and bool(chosen[i] > threshold)

    rows = []
    for i in range(len(images)):
        row: dict[str, Any] = {"bpd": float(base["bpd"][i]), "png_bpd": float(base["png_bpd"][i])}
        row.update({s: None if values[s] is None else float(values[s][i]) for s in SCORES})
        row.update({"score": float(chosen[i]), "score_name": name,
                    "p_value": None if p is None else float(p[i]),
                    "flag": None if threshold is None else row_flag(i),
                    "threshold": threshold,
                    "capture_p_value": None if capture_p is None else float(capture_p[i]),
                    "capture_flag": None if capture_fires is None else bool(capture_fires[i]),
                    "capture_why": why[i],
                    "parts": {part: float(v[i]) for part, v in terms.items()},
                    "why": _why(terms, i) if row_flag(i) else ""})
        rows.append(row)
    return rows


# What a part that carries most of a flag says about the image, for the app and the CSV.
PART_WHY = {
    "complexity": "the flow needs many more bits than a PNG compressor for it",
    "likelihood_ratio": "the flow needs many more bits than a model of local pixel statistics",
    "exemplar_distance": "its pixels are far from every training example",
    "exemplar_shape": "its shape is far from every training example",
}


def _why(terms: dict[str, np.ndarray], i: int) -> str:
    """The part that carries the largest share of image ``i``'s evidence, in words."""
    if not terms:
        return ""
    part = max(terms, key=lambda name: terms[name][i])
    return PART_WHY.get(part, part)


def batch_typicality(bpd: np.ndarray, calibration: dict[str, Any]) -> dict[str, float]:
    """Batch form of the typicality test: ``|mean bpd - c|`` over a batch of M images, with a
    normal-approximation two-sided p-value from the validation spread / sqrt(M)."""
    entry = calibration["scores"]["typicality"]
    bpd = np.asarray(bpd, dtype=np.float64)
    distance = abs(float(np.mean(bpd)) - entry["center"])
    spread = entry["threshold"] / 1.959964  # single-image 95 % half-width -> one sigma, roughly
    z = distance / (spread / math.sqrt(len(bpd)))
    return {"typicality": distance, "p_value": math.erfc(z / math.sqrt(2.0))}
