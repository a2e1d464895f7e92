"""A checkpoint's card (``inpaint_app.card.ModelCard``) as Markdown for the Models tab."""

from __future__ import annotations

from typing import Any

from ..card import ModelCard


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) else "n/a"


def _quality(card: ModelCard) -> list[str]:
    lines = []
    for split in ("test", "val"):
        measured = getattr(card, split)
        if measured is not None:
            spread = f" ± {_num(measured.stderr, 2)}" if measured.stderr is not None else ""
            lines.append(f"- **{split} bits/dim**: {_num(measured.bpd)}{spread}")
            lines.append(f"  <small>{measured.describe(split)}</small>")
    return lines


def _thresholds(anomaly: dict[str, Any] | None) -> list[str]:
    if not anomaly:
        return ["- **anomaly thresholds**: not calibrated (`python -m pipelines.calibrate`)"]
    default = anomaly.get("default_score")
    fpr = anomaly.get("fpr")
    lines = [f"- **anomaly thresholds** at {_num(100 * fpr if fpr else None, 3)} % false "
             f"positives on {anomaly.get('source', 'validation images')}; the flag uses "
             f"**{default}**:"]
    for name, entry in anomaly.get("scores", {}).items():
        mark = " (flag)" if name == default else ""
        lines.append(f"  - {name}{mark}: {_num(entry.get('threshold'))}")
    return lines


def card_markdown(name: str, card: ModelCard, image_shape: tuple[int, ...], *,
                  warning: str | None = None, inpainting: str | None = None) -> str:
    """Dataset, shape, bits/dim, thresholds, inpainting methods, training time and hardware, how
    it was made; ``warning`` (stale thresholds, ``ModelBundle.stale_note``) right under the
    title; ``inpainting``: what the default method runs (``methods.describe_default``)."""
    shape = "x".join(str(s) for s in image_shape)
    lines = [f"### {name}", *([f"**Warning**: {warning}"] if warning else []),
             f"- **dataset**: {card.dataset or 'unknown'} · **model**: "
             f"{card.model or 'unknown'} · **input**: {shape} (C x H x W)"
             + (f" · **parameters**: {card.parameters:,}" if card.parameters else ""),
             *_quality(card), *_thresholds(card.anomaly),
             *([f"- **inpainting**: {inpainting}"] if inpainting else []),
             f"- **training**: {_num(card.training_minutes, 4)} minutes on "
             f"{card.hardware or 'unknown hardware'}"]
    if card.command:  # the commit first: after a long command it wrapped onto a line alone
        lines.append("- **command**" + (f" (commit `{card.commit}`)" if card.commit else "")
                     + f": `{card.command}`")
    note = card.notes.get("training_note")
    if note:
        lines.append(f"- **notes**: {note}")
    return "\n".join(lines)


def skipped_markdown(skipped: dict[str, str]) -> str:
    """The bundles found in the models folder but not offered, each with why; empty when
    every one loaded."""
    if not skipped:
        return ""
    lines = [f"- **{name}**: {reason}" for name, reason in sorted(skipped.items())]
    return "\n".join(["### Not offered", "Found in the models folder but skipped at start "
                       "(fix the file and restart):", *lines])
