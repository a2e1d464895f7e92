"""Where a calibration reads a score part's spread: a tail quantile that adapts to the size of
the validation set. Its own module, since both the verdict (``anomaly``) and the stale-note
check of a bundle (``bundle``) need it, and ``anomaly`` imports ``bundle``."""

from __future__ import annotations

SPREAD_TAIL_IMAGES = 20  # validation images beyond the quantile a part's spread is read at


def spread_quantile(n: int) -> float:
    """The tail quantile a part's spread is measured at: 99 %, or lower where fewer than
    ``SPREAD_TAIL_IMAGES`` of ``n`` validation images would lie beyond it, but never under 90 %
    (a spread read near the median would weigh a part by its bulk, not its tail). A folder model
    has about 300 validation files; its 99 % point rests on 3 of them, and so did each part's
    weight in ``evidence`` (calibration alone moved a folder's AUROC by +-0.013)."""
    return min(0.99, max(0.9, 1.0 - SPREAD_TAIL_IMAGES / max(n, 1)))
