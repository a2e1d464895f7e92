"""A checkpoint's card (the dict saved beside its weights) as Markdown for the Models tab."""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) else "n/a"


def _quality(card: dict[str, Any]) -> list[str]:
    lines = []
    for split in ("test", "val"):
        if f"{split}_bpd" in card:
            err = card.get(f"{split}_bpd_stderr")
            spread = f" ± {_num(err, 2)}" if err is not None else ""
            lines.append(f"- **{split} bits/dim**: {_num(card[f'{split}_bpd'])}{spread}")
            if card.get(f"{split}_measured"):
                lines.append(f"  <small>{card[f'{split}_measured']}</small>")
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


def card_markdown(name: str, card: dict[str, Any], image_shape: tuple[int, ...]) -> str:
    """Dataset, shape, bits/dim, thresholds, training time and hardware, how it was made."""
    shape = "x".join(str(s) for s in image_shape)
    lines = [f"### {name}",
             f"- **dataset**: {card.get('dataset', 'unknown')} · **model**: "
             f"{card.get('model', 'unknown')} · **input**: {shape} (C x H x W)"
             + (f" · **parameters**: {card['parameters']:,}" if "parameters" in card else ""),
             *_quality(card), *_thresholds(card.get("anomaly")),
             f"- **training**: {_num(card.get('training_minutes'), 4)} minutes on "
             f"{card.get('hardware', 'unknown hardware')}"]
    if card.get("command"):
        lines.append(f"- **command**: `{card['command']}`"
                     + (f" (commit {card['commit']})" if card.get("commit") else ""))
    if card.get("notes"):
        lines.append(f"- **notes**: {card['notes']}")
    return "\n".join(lines)
