"""The conditional inpainting flow: its layers under a fixed context (the layer harness's checks),
its exact conditional log-likelihood against closed form and brute force, sampling, training."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable

import pytest
import torch

import inpaint_app.flows.conditional as conditional_layers
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.card import ModelCard
from inpaint_app.conditional import ConditionalInpainter
from inpaint_app.density import bits_per_dim_from_log_prob
from inpaint_app.flows.conditional import (
    PATTERNS,
    ConditionalAffine,
    ConditionalFlow,
    ConditionalSequential,
    Context,
    MaskedAffineCoupling,
    pattern_mask,
)
from inpaint_app.masks import training_masks
from inpaint_app.models import CheckpointError, build_model, load_model, read_card, save_model

SHAPE, FEATURES, BATCH = (4, 4, 4), 3, 3

CASES: dict[str, Callable[[], ConditionalFlow]] = {
    **{f"coupling-{p}-{parity}": (lambda p=p, parity=parity: MaskedAffineCoupling(
        SHAPE[0], FEATURES, pattern=p, parity=parity, hidden=8))
       for p in PATTERNS for parity in (0, 1)},
    "affine": lambda: ConditionalAffine(SHAPE[0], FEATURES),
    "sequential": lambda: ConditionalSequential(
        MaskedAffineCoupling(SHAPE[0], FEATURES, pattern="checker", hidden=8),
        ConditionalAffine(SHAPE[0], FEATURES),
        MaskedAffineCoupling(SHAPE[0], FEATURES, pattern="subpixel-rows", parity=1, hidden=8)),
}


def make_context(seed: int = 0) -> Context:
    g = torch.Generator().manual_seed(seed)
    missing = (torch.rand(BATCH, *SHAPE, generator=g) < 0.6).double()
    observed = torch.randn(BATCH, *SHAPE, generator=g, dtype=torch.float64) * (1 - missing)
    features = torch.randn(BATCH, FEATURES, *SHAPE[1:], generator=g, dtype=torch.float64)
    return Context(missing, observed, features)


def make_layer(name: str) -> ConditionalFlow:
    """The layer in float64 with every parameter perturbed (zero-initialised outputs would make
    it the identity and let a wrong log-det pass)."""
    torch.manual_seed(0)
    layer = CASES[name]().double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer.eval()


def x_input(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, *SHAPE, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def per_example_logabsdet(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
                          ) -> torch.Tensor:
    jac = torch.autograd.functional.jacobian(lambda v: fn(v).reshape(v.shape[0], -1), x,
                                             vectorize=True)
    jac = jac.reshape(x.shape[0], -1, x.shape[0], x[0].numel())
    blocks = torch.stack([jac[i, :, i, :] for i in range(x.shape[0])])
    for i in range(x.shape[0]):
        jac[i, :, i, :] = 0
    assert torch.count_nonzero(jac) == 0, "an example's output depends on another example"
    return torch.linalg.slogdet(blocks)[1]


@pytest.mark.parametrize("name", CASES)
def test_round_trip_under_fixed_context(name: str) -> None:
    layer, x, context = make_layer(name), x_input(), make_context()
    with torch.no_grad():
        z, _ = layer(x, context)
        assert (layer.inverse(z, context) - x).abs().max().item() < 1e-10


@pytest.mark.parametrize("name", CASES)
def test_logdet_matches_autograd_jacobian(name: str) -> None:
    layer, x, context = make_layer(name), x_input(), make_context()
    expected = per_example_logabsdet(lambda v: layer(v, context)[0], x)
    torch.testing.assert_close(layer(x, context)[1], expected, rtol=1e-9, atol=1e-9)
    assert expected.abs().min() > 1e-3, "a trivial log-det would not test anything"


@pytest.mark.parametrize("name", CASES)
def test_observed_values_pass_unchanged(name: str) -> None:
    layer, x, context = make_layer(name), x_input(), make_context()
    z, _ = layer(x, context)
    observed = context.missing == 0
    assert torch.equal(z[observed], x[observed])
    assert not torch.equal(z[~observed], x[~observed])


def test_harness_covers_every_conditional_layer() -> None:
    covered = {type(factory()) for factory in CASES.values()}
    defined = {cls for _, cls in inspect.getmembers(conditional_layers, inspect.isclass)
               if issubclass(cls, ConditionalFlow) and cls is not ConditionalFlow}
    assert defined <= covered, f"layers without harness cases: {defined - covered}"


def test_patterns_split_every_value_in_two() -> None:
    for kind in PATTERNS:
        a, b = (pattern_mask(kind, parity, (8, 4, 6)) for parity in (0, 1))
        assert torch.equal(a + b, torch.ones_like(a)) and 0 < a.sum() < a.numel()


# ---- the model ---------------------------------------------------------------------------------

def tiny_model(seed: int = 0, perturb: float = 0.1) -> ConditionalInpainter:
    torch.manual_seed(seed)
    model = build_model("cflow", (1, 4, 4), steps=2, hidden=8, features=4, width=8).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(perturb * torch.randn_like(p))
    return model.eval()


def bottom_half(batch: int) -> torch.Tensor:
    mask = torch.zeros(batch, 4, 4, dtype=torch.bool)
    mask[:, 2:] = True
    return mask


def test_log_prob_is_closed_form_logit_normal_when_layers_are_identity() -> None:
    """With identity layers and a constant prior N(mu, sigma^2), each missing value is
    logit-normal: p(y) = N(logit(s); mu, sigma) * (1 - 2a) / (s (1 - s)), s = a + (1 - 2a) y."""
    model = tiny_model(perturb=0.0)
    mu, log_sigma, alpha = 0.3, -0.4, 0.05
    with torch.no_grad():
        model.prior.bias.copy_(torch.tensor([mu] * 4 + [log_sigma] * 4, dtype=torch.float64))
        for layer in model.flow.flows:  # couplings start as contractions: open them fully
            if isinstance(layer, MaskedAffineCoupling):
                layer.net[-1].bias[4:] = 60.0
    y = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    missing = bottom_half(2)
    s = alpha + (1 - 2 * alpha) * y
    u = torch.log(s / (1 - s))
    sigma = math.tanh(log_sigma / 4.0) * 4.0  # the prior's soft clamp of the log-scale
    log_density = (-0.5 * ((u - mu) / math.exp(sigma)) ** 2 - sigma - 0.5 * math.log(2 * math.pi)
                   + math.log(1 - 2 * alpha) - torch.log(s * (1 - s)))
    expected = (log_density * missing[:, None]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(model.log_prob(y, missing), expected, rtol=1e-10, atol=1e-10)


def test_log_prob_matches_brute_force_change_of_variables() -> None:
    """log p(y_missing | y_obs) = log N(z; mu, sigma) + log|det dz/dy_missing| with the dense
    Jacobian of the whole map from the missing pixels to their latents, taken by autograd."""
    model = tiny_model(perturb=0.2)
    y = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = y * 0.9 + 0.05
    missing = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(6)) < 0.5
    missing[0, 0, 0] = True
    index = missing.flatten().nonzero().squeeze(1)
    m = model.missing_mask(missing, 1, y.device).double()
    context = model.context(y, m)

    def latent_of(values: torch.Tensor) -> torch.Tensor:
        full = y.flatten().clone().index_copy(0, index, values).reshape(y.shape)
        u = model.preprocess.elementwise(model._squeeze(full))[0]
        z, _ = model.flow(u * context.missing, context)
        return model.squeeze.inverse(z).flatten()[index]

    values = y.flatten()[index]
    jac = torch.autograd.functional.jacobian(latent_of, values)
    mean, log_sigma = model._prior(context)
    mean, log_sigma = (model.squeeze.inverse(t).flatten()[index] for t in (mean, log_sigma))
    z = latent_of(values)
    log_normal = (-0.5 * ((z - mean) / log_sigma.exp()) ** 2 - log_sigma
                  - 0.5 * math.log(2 * math.pi)).sum()
    expected = log_normal + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(model.log_prob(y, missing)[0], expected, rtol=1e-9, atol=1e-9)


def test_bits_per_missing_dim_counts_only_missing_values() -> None:
    model = tiny_model()
    y = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    missing = bottom_half(2)
    bpd = model.bits_per_dim(y, missing)
    torch.testing.assert_close(bpd, bits_per_dim_from_log_prob(model.log_prob(y, missing), 8))


def test_completions_keep_observed_pixels_bit_for_bit() -> None:
    model = tiny_model().float()
    y_obs = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    missing = bottom_half(2)
    samples = model.complete(y_obs, missing, n=5, temperature=0.8,
                             generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 5, 1, 4, 4)
    observed = ~missing[:, None, None].expand_as(samples)
    assert torch.equal(samples[observed], y_obs[:, None].expand_as(samples)[observed])
    assert samples[~observed].std() > 0  # the missing pixels vary between samples
    assert 0.0 <= samples.min() and samples.max() <= 1.0


def test_samples_invert_the_density_map() -> None:
    """A completion's missing pixels map back to the latent they were drawn from: sampling
    is the flow's exact inverse, so log p of a sample is finite and high at temperature 0."""
    model = tiny_model().float()
    y_obs = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    missing = bottom_half(1)
    cold = model.complete(y_obs, missing, n=1, temperature=0.0)[:, 0]
    warm = model.complete(y_obs, missing, n=16, temperature=1.0,
                          generator=torch.Generator().manual_seed(1))[0]
    cold_lp = model.log_prob(cold, missing)
    warm_lp = model.log_prob(warm, missing.expand(16, 4, 4))
    assert torch.isfinite(warm_lp).all() and cold_lp.item() > warm_lp.mean().item()


def test_training_masks_are_varied_reproducible_and_never_empty() -> None:
    def draw() -> torch.Tensor:
        return training_masks(256, (28, 28), torch.Generator().manual_seed(0))

    masks = draw()
    assert masks.shape == (256, 28, 28) and masks.dtype == torch.bool
    assert torch.equal(masks, draw())
    fractions = masks.flatten(1).float().mean(dim=1)
    assert fractions.min() > 0 and fractions.max() > 0.8 and fractions.min() < 0.05
    # about 30 % are the five fixed presets; nearly all of the rest are distinct
    assert len({tuple(m.flatten().tolist()) for m in masks}) > 150


def test_train_step_lowers_the_conditional_loss() -> None:
    from inpaint_app.training import LogProb, train_step

    torch.manual_seed(0)
    model = build_model("cflow", (1, 8, 8), steps=2, hidden=16, features=8, width=16)
    data = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    data[:, :, 2:6, 2:6] = 200  # one image, many copies: easy to learn
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = [train_step(LogProb(model), model, data, optimizer, generator=g) for _ in range(60)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0


def test_checkpoint_round_trip(tmp_path) -> None:
    model = tiny_model().float()
    save_model(model, tmp_path / "model.pt", card={"name": "tiny"})
    loaded = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, ConditionalInpainter) and read_card(tmp_path).name == "tiny"
    with pytest.raises(CheckpointError, match="is a conditional inpainting model, not an image"):
        load_bundle(tmp_path)  # served only beside an image model, as its inpainter.pt
    y = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(loaded.log_prob(y, bottom_half(2)),
                               model.log_prob(y, bottom_half(2)))


# ---- the default inpainting method -----------------------------------------------------------

@pytest.fixture(scope="module")
def glow_with_inpainter() -> ModelBundle:
    from inpaint_app.exemplars import ExemplarBank

    torch.manual_seed(0)
    glow = build_model("glow", image_shape=(1, 8, 8), hidden=8, steps=2)
    with torch.no_grad():
        glow.log_prob(torch.rand(16, 1, 8, 8) * 0.9 + 0.05)  # ActNorm init
    glow.eval()
    bank = ExemplarBank(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(4)))
    inpainter = build_model("cflow", (1, 8, 8), steps=2, hidden=8, features=4, width=8)
    with torch.no_grad():
        for p in inpainter.parameters():
            p.add_(0.1 * torch.randn_like(p))
    card = ModelCard(inpainting={"samples": 4, "temperature": 0.7, "ascent_steps": 0})
    return ModelBundle(glow, exemplars=bank, inpainter=inpainter.eval(), inpainter_card=card)


def test_default_samples_the_conditional_flow(glow_with_inpainter) -> None:
    from inpaint_app.inpainting import inpaint

    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[4:] = True
    result = inpaint(glow_with_inpainter, image, mask)
    assert "conditional flow: 4 samples at temperature 0.7" in result.message
    assert result.samples.shape == (4, 1, 8, 8) and result.uncertainty.shape == (8, 8)
    for filled in (result.image, *result.samples):
        assert torch.equal(filled[:, ~mask], image[:, ~mask])
    assert float(result.uncertainty[~mask].abs().max()) == 0
    assert float(result.uncertainty[mask].max()) > 0
    assert result.trajectory_label.startswith("bits per missing dim")
    same = inpaint(glow_with_inpainter, image, mask)
    assert torch.equal(same.samples, result.samples)  # seeded: reproducible


def test_conditional_ascent_raises_the_conditional_log_likelihood(glow_with_inpainter) -> None:
    from inpaint_app.inpainting import inpaint

    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 2:6] = True
    result = inpaint(glow_with_inpainter, image, mask, steps=15)
    assert len(result.bpd_trajectory) == 16 and result.steps == 15
    assert min(result.bpd_trajectory[1:]) < result.bpd_trajectory[0] - 1e-3


def test_exemplar_method_and_fallback_without_conditional_model(glow_with_inpainter) -> None:
    from inpaint_app.inpainting import NO_CONDITIONAL, inpaint

    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4] = True
    exemplar = inpaint(glow_with_inpainter, image, mask, method="exemplar")
    assert exemplar.steps == 0 and len(exemplar.bpd_trajectory) == 1
    start = glow_with_inpainter.exemplars.fill((image[None].float() + 0.5) / 256,
                                               mask[None, None])
    assert torch.equal(exemplar.image[:, mask], (start[0] * 256).floor().clamp(0, 255).to(
        torch.uint8)[:, mask])
    fallback = inpaint(dataclasses.replace(glow_with_inpainter, inpainter=None), image, mask)
    assert NO_CONDITIONAL in fallback.message and fallback.steps == 10
    bare = inpaint(glow_with_inpainter.model, image, mask)  # a bare model: no flow, no bank
    assert NO_CONDITIONAL in bare.message and bare.steps == 10
    with pytest.raises(ValueError, match="temperature"):
        inpaint(glow_with_inpainter, image, mask, method="nice", temperature=0.5)


def test_mask_kind_tells_holes_from_scattered_pixels() -> None:
    from inpaint_app.masks import MASK_PRESETS, border_share, make_mask, mask_kind

    masks = {p: torch.stack([make_mask(p, (28, 28), seed=i) for i in range(8)])
             for p in MASK_PRESETS}
    kinds = {p: set(mask_kind(m)) for p, m in masks.items()}
    assert kinds == {p: {"sparse" if p == "random90" else
                         "scattered" if p.startswith("random") else "compact"}
                     for p in MASK_PRESETS}
    assert border_share(make_mask("bottom", (28, 28))).item() == pytest.approx(28 / 392)
    assert border_share(torch.ones(28, 28, dtype=torch.bool)).item() == 0  # nothing observed
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 == 0
    assert border_share(checker).item() == 1 and mask_kind(checker[None]) == ["scattered"]


def test_per_image_temperature_matches_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    inpainter = build_model("cflow", (1, 8, 8), steps=2, hidden=8, features=4, width=8).eval()
    y = torch.rand(2, 1, 8, 8)
    missing = torch.zeros(2, 8, 8, dtype=torch.bool)
    missing[:, 4:] = True
    noise = torch.randn(2, 3, *inpainter.latent_shape)
    with torch.no_grad():
        both = inpainter.complete(y, missing, 3, torch.tensor([0.3, 0.9]), noise=noise)
        for i, temperature in enumerate((0.3, 0.9)):
            alone = inpainter.complete(y[i:i + 1], missing[i:i + 1], 3, temperature,
                                       noise=noise[i:i + 1])
            assert torch.allclose(both[i], alone[0], atol=1e-6)


def test_default_samples_at_the_card_temperature_of_each_mask_kind(glow_with_inpainter
                                                                   ) -> None:
    from inpaint_app.inpainting import conditional_settings, inpaint_batch
    from inpaint_app.masks import make_mask

    card = ModelCard(inpainting={"samples": 4, "ascent_steps": 0, "temperature_by_mask": {
        "compact": 0.8, "scattered": 0.0}})
    bundle = dataclasses.replace(glow_with_inpainter, inpainter_card=card)
    assert conditional_settings(card)["temperature_by_mask"] == {
        "compact": 0.8, "scattered": 0.0, "sparse": 0.0}  # no "sparse": the scattered one
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(5))
    masks = torch.stack([make_mask("bottom", (8, 8)), make_mask("random50", (8, 8))])
    hole, scattered = inpaint_batch(bundle, images, masks)
    forced = inpaint_batch(bundle, images, masks, temperature=0.8)[1]
    assert "temperature 0.8 (compact mask)" in hole.message
    assert "temperature 0 (scattered mask)" in scattered.message
    assert not torch.equal(hole.samples[0], hole.samples[1])
    assert all(torch.equal(s, scattered.samples[0]) for s in scattered.samples)  # T = 0
    assert "temperature 0.8," in forced.message  # an explicit temperature applies to every mask
    assert not torch.equal(forced.samples[0], forced.samples[1])
    old_card = conditional_settings(glow_with_inpainter.inpainter_card)  # one "temperature"
    assert old_card["temperature_by_mask"] == {"compact": 0.7, "scattered": 0.7, "sparse": 0.7}


def test_tuner_chooses_a_temperature_per_mask_kind_within_the_gap() -> None:
    from pipelines.tune_inpainter import choose

    kinds = {"top": "compact", "center": "compact", "random50": "scattered",
             "random90": "sparse"}

    def entry(t: float, steps: int, psnr: dict, gap: dict) -> dict:
        return {"temperature": t, "ascent_steps": steps, "psnr_by_preset": psnr,
                "gap_by_preset": gap}

    grid = []
    for t, gaps in ((0.5, (0.0, 0.0, 0.05, 0.0)), (0.7, (0.1, 0.12, 0.3, 0.1)),
                    (0.9, (0.25, 0.1, 0.6, 0.2))):
        for steps, bonus in ((0, 0.0), (10, 0.02)):
            grid.append(entry(t, steps, {p: 10 * t + bonus for p in kinds},
                              dict(zip(kinds, gaps, strict=True))))
    chosen = choose(grid, kinds, max_gap=0.15, min_ascent_gain=0.05)
    assert chosen["temperature_by_mask"] == {"compact": 0.7, "scattered": 0.5, "sparse": 0.7}
    assert chosen["ascent_steps"] == 0  # +0.02 dB does not pay for the climb
    assert choose(grid, kinds, 0.15, 0.01)["ascent_steps"] == 10
    strict = choose(grid, kinds, max_gap=0.01, min_ascent_gain=0.05)
    assert strict["temperature_by_mask"] == {"compact": 0.5, "scattered": 0.5, "sparse": 0.5}
    assert strict["realistic"] == {"compact": True, "scattered": False, "sparse": True}


def test_image_model_with_inpainter_attached_still_trains_unconditionally(
        glow_with_inpainter) -> None:
    from inpaint_app.training import LogProb

    glow = glow_with_inpainter.model  # the bundle's image model: nothing attached to it
    assert not hasattr(glow, "inpainter") and not hasattr(glow, "inpainters")
    y = torch.rand(2, 1, 8, 8) * 0.9 + 0.05
    log_prob, dims = LogProb(glow)(y)
    torch.testing.assert_close(log_prob, glow.log_prob(y))
    assert dims.tolist() == [64.0, 64.0]


def test_bad_inpainter_file_is_a_clear_checkpoint_error(tmp_path) -> None:
    torch.manual_seed(0)
    glow = build_model("glow", image_shape=(1, 8, 8), hidden=8, steps=2)
    save_model(glow, tmp_path / "model.pt")
    save_model(build_model("glow", image_shape=(1, 8, 8), hidden=8, steps=2),
               tmp_path / "inpainter.pt")  # an image model where the inpainter should be
    with pytest.raises(CheckpointError, match="inpainter.pt is not a conditional"):
        load_bundle(tmp_path)
    save_model(tiny_model().float(), tmp_path / "inpainter.pt")  # 4x4 images, not 8x8
    with pytest.raises(CheckpointError, match="images of shape"):
        load_bundle(tmp_path)
    save_model(build_model("cflow", (1, 8, 8), steps=2, hidden=8, features=4, width=8),
               tmp_path / "inpainter.pt", card={"inpainting": {"samples": 3}})
    bundle = load_bundle(tmp_path)
    assert isinstance(bundle.inpainter, ConditionalInpainter)
    assert bundle.inpainter_card.inpainting == {"samples": 3}
    assert not hasattr(load_model(tmp_path), "inpainter")  # the bare model carries none


def test_tuner_chooses_again_from_the_card_without_touching_the_image_model(tmp_path) -> None:
    import json

    from pipelines.tune_inpainter import main as tune

    torch.manual_seed(0)
    save_model(build_model("glow", image_shape=(1, 8, 8), hidden=8, steps=2),
               tmp_path / "model.pt", card={"name": "image model"})
    presets = ("top", "bottom", "left", "right", "center", "random25", "random50", "random75",
               "random90", "strokes")
    grid = [{"temperature": t, "ascent_steps": 0, "psnr_by_preset": dict.fromkeys(presets, t),
             "gap_by_preset": {p: (0.5 * t if p.startswith("random") else 0.2 * t)
                               for p in presets}} for t in (0.2, 0.4, 0.6)]
    inpainter = build_model("cflow", (1, 8, 8), steps=2, hidden=8, features=4, width=8)
    tuned = {"samples": 4, "temperature": 0.4, "ascent_steps": 0, "exemplar_psnr": 1.0,
             "chosen_on": "first 8 validation images", "grid": grid}
    save_model(inpainter, tmp_path / "run" / "model.pt", card={"inpainting": tuned})
    # the number of images is a field of the card; the chosen_on sentence is never parsed
    with pytest.raises(SystemExit, match="no images"):
        tune([str(tmp_path / "run" / "model.pt"), "--into", str(tmp_path), "--from-card"])
    save_model(inpainter, tmp_path / "run" / "model.pt", card={"inpainting": {
        **tuned, "images": 8}})
    tune([str(tmp_path / "run" / "model.pt"), "--into", str(tmp_path), "--from-card",
          "--install", "--max-gap", "0.15"])
    assert json.loads((tmp_path / "card.json").read_text()) == {"name": "image model"}
    card = json.loads((tmp_path / "inpainter-card.json").read_text())
    assert card["inpainting"]["temperature_by_mask"] == {"compact": 0.6, "scattered": 0.2,
                                                         "sparse": 0.2}
    bundle = load_bundle(tmp_path)
    assert bundle.inpainter_card == ModelCard.from_dict(card) and bundle.card.name == "image model"
    assert bundle.inpainter_card.to_dict() == card


def test_app_refuses_to_serve_a_conditional_checkpoint(tmp_path) -> None:
    import gradio as gr

    from inpaint_app.app.registry import ModelCache

    save_model(tiny_model().float(), tmp_path / "cflow" / "model.pt")
    cache = ModelCache({"cflow": tmp_path / "cflow" / "model.pt"}, "cflow")
    with pytest.raises(gr.Error, match="conditional inpainting model"):
        cache.get("cflow")
