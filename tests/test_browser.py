"""The app in a real browser: Playwright drives Debian's Chromium against a live server.

Refuses an oversized and a non-image upload with clear errors; picks an example (its model and
mask follow); paints a mask with the mouse on an example, inpaints, and checks that the fill
changed pixels only inside the mask; scores an upload in the Anomaly tab; draws samples in the
Models tab. Screenshots
of each tab go to a temporary folder, or to $FLOWPAINT_SCREENSHOTS (``make screenshots`` sets it to
docs/screenshots/, so that ``make test`` never rewrites tracked files). Skipped only when Chromium
or Playwright is missing (``make test`` installs both).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaint_app.normalize import prepare
from inpaint_app.nuisances import binarized, low_resolution, photographed

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS_ENV = "FLOWPAINT_SCREENSHOTS"
TRAINED = Path(__file__).resolve().parents[1] / "trained"
# The gallery: each shipped model's own examples, the default model's (MNIST) first
# (``Handlers.examples``); index 3 of MNIST's is a handwritten 7, 0 of Fashion-MNIST's a top.
GALLERY = [TRAINED / f"{data}-glow" / "examples" / f"{data}-val-{i:02d}.png"
           for data in ("mnist", "fashion-mnist") for i in range(6)]
EXAMPLE = GALLERY[3]
FASHION_EXAMPLE = GALLERY[6]
STEPS = 20  # enough for a visible fill, short enough for a quick CPU run

pytestmark = [pytest.mark.browser,
              # Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                         "ignore:The copy keyword is deprecated")]

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (make test installs it)")
if not shutil.which(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (make test does)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def url(free_port) -> Iterator[str]:
    """The app on the shipped checkpoints, on a free loopback port, for this module."""
    from inpaint_app.app import create_app, launch_kwargs

    demo = create_app()
    demo.launch(**{**launch_kwargs(port=free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        # Not "networkidle": the page keeps a heartbeat open (it holds per-session state).
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#inpaint-button").wait_for(state="visible")
        yield page
        browser.close()


def _fetch(page: sync_api.Page, selector: str) -> np.ndarray:
    """The pixels of the image shown in ``selector`` (downloaded from the server, as L).

    ``max_retries``: Playwright reuses a kept-alive connection that the server may close after 5
    idle seconds (uvicorn's keep-alive timeout); a request sent as it closes fails with
    ECONNRESET, and is retried as a browser would."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src, max_retries=1, fail_on_status_code=True).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _paint_stroke(page: sync_api.Page) -> None:
    """Brush tool, then a horizontal drag across the middle of the displayed image."""
    page.locator("#editor button[aria-label='Brush']").click()
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 70, y - 10)
    page.mouse.down()
    page.mouse.move(x + 70, y - 10, steps=4)  # few events: each one re-renders the canvas
    page.mouse.up()


def _reload(page: sync_api.Page) -> None:
    """A fresh page, ready once the app has rendered. Not "networkidle": the app's open
    connections can keep the network busy past any timeout on a loaded machine."""
    page.reload(wait_until="domcontentloaded")
    page.locator("#inpaint-button").wait_for(state="visible")


def _choose(page: sync_api.Page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_uploads_and_examples_tell_the_user_what_happens(page: sync_api.Page,
                                                         tmp_path: Path) -> None:
    """Issue 18.1, 18.2, 18.6: an oversized upload and a non-image get clear errors; a
    Fashion-MNIST example selects its model and a mask, and says what it shows."""
    big, fake = tmp_path / "big.png", tmp_path / "fake.png"
    big.write_bytes(b"\0" * (21 * 2**20))  # the browser checks the size before uploading
    fake.write_bytes(b"plain text, renamed to .png")
    toasts = page.locator(".toast-body")
    upload = page.locator("#inpaint-file input[type=file]")
    upload.set_input_files(str(big))
    sync_api.expect(toasts.filter(has_text="exceed the maximum allowed size")).to_contain_text(
        "big.png")
    upload.set_input_files(str(fake))
    sync_api.expect(toasts.filter(has_text="fake.png")).to_contain_text(
        "not an image this app reads")
    page.locator(".gallery-item").nth(GALLERY.index(FASHION_EXAMPLE)).click()
    sync_api.expect(page.locator("#image-note")).to_contain_text("a T-shirt or top, one of "
                                                                 "model fashion-mnist-glow")
    sync_api.expect(page.locator("#image-note")).to_contain_text("Fashion-MNIST validation")
    sync_api.expect(page.locator("#model input")).to_have_value("fashion-mnist-glow")
    sync_api.expect(page.locator("#mask input")).to_have_value("bottom")
    # the normalize switch explains the selected model's own recipe (a 2026-11-26 review note)
    sync_api.expect(page.locator("#inpaint-normalize")).to_contain_text("fitted into 28x28")


def test_paint_inpaint_and_score(page: sync_api.Page, tmp_path: Path) -> None:
    from inpaint_app.app.wording import VERDICTS

    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    _reload(page)
    zoom = page.locator("#editor .zoom-number")
    before = zoom.inner_text()
    page.locator(".gallery-item").nth(GALLERY.index(EXAMPLE)).click()
    sync_api.expect(zoom).not_to_have_text(before)  # the canvas took the example's size
    sync_api.expect(page.locator("#model input")).to_have_value("mnist-glow")
    _choose(page, "#mask", "painted")
    _paint_stroke(page)
    page.locator("#steps input[type=number]").fill(str(STEPS))
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#inpaint-button").click()
    page.locator("#filled img").wait_for(timeout=110_000)
    sync_api.expect(page.locator("#inpaint-summary")).to_contain_text(
        f"at step {STEPS}")
    page.screenshot(path=str(shots / "inpaint.png"), full_page=True)

    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    seen = prepare(Image.open(EXAMPLE), (1, 28, 28), "mnist")[0][0].numpy()
    view, filled = _fetch(page, "#model-view"), _fetch(page, "#filled")
    mask = (view == (255, 0, 255)).all(axis=-1)
    assert filled.shape == original.shape == view.shape
    assert 0 < mask.sum() < mask.size / 2, "the painted stroke should mark some pixels"
    assert (view[~mask][:, 0] == seen[~mask]).all(), "the model saw the normalized example"
    assert (filled[~mask] == original[~mask]).all(), "the fill changed a pixel outside the mask"
    assert (filled[mask] != original[mask]).any(), "nothing was filled inside the mask"

    page.get_by_role("tab", name="Anomaly").click()
    digit = Image.open(EXAMPLE).convert("L")
    jpeg = tmp_path / f"{EXAMPLE.stem}-jpeg.jpg"  # the same digit re-saved as JPEG q75
    digit.save(jpeg, quality=75)
    photo = tmp_path / f"{EXAMPLE.stem}-photo.jpg"  # on paper, light falling off 100 levels
    photographed(100)(torch.from_numpy(np.array(digit))[None], 0).save(photo, quality=90)
    bitmap = tmp_path / f"{EXAMPLE.stem}-bitmap.png"  # a 16 x 16 binarized form digit
    binarized(128, then=low_resolution(16))(torch.from_numpy(np.array(digit))[None], 0).save(
        bitmap)
    page.locator("#anomaly-files input[type=file]").set_input_files(
        [str(EXAMPLE), str(jpeg), str(photo), str(bitmap), str(FASHION_EXAMPLE)])
    page.locator("#score-button").click()
    rows = page.locator("#verdicts [role=row]")
    captures = {EXAMPLE.name: "captured like MNIST", jpeg.name: "faint halo",
                photo.name: "photographed page", bitmap.name: "binarized"}
    for name in (EXAMPLE.name, jpeg.name, photo.name, bitmap.name, FASHION_EXAMPLE.name):
        row = rows.filter(has_text=name).first
        sync_api.expect(row).to_be_visible(timeout=60_000)
        text = row.inner_text()
        verdicts = [v for v in VERDICTS.values() if v in text]
        assert verdicts, f"no verdict in the row of {name}: {text!r}"
        assert row.locator("img").count() == 1, "no thumbnail of what the model saw"
        # Both axes in words: the content verdict, and how the image was captured
        if name in captures:
            assert captures[name] in text, (name, text)
    page.screenshot(path=str(shots / "anomaly.png"), full_page=True)

    page.get_by_role("tab", name="Inpaint").click()  # a scan: black on a white page
    scan = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(scan).line([(50, 30), (90, 30), (62, 112)], fill=0, width=10)
    scan.save(tmp_path / "scan.png")
    page.locator("#inpaint-file input[type=file]").set_input_files(str(tmp_path / "scan.png"))
    sync_api.expect(page.locator("#image-note")).to_contain_text("scan.png")
    _choose(page, "#mask", "bottom")
    page.locator("#inpaint-button").click()
    sync_api.expect(page.locator("#inpaint-summary")).to_contain_text("light background: "
                                                                      "inverted")
    filled = _fetch(page, "#filled")
    assert filled.shape[:2] == (140, 140) and (filled[:10, :10] == 255).all(), \
        "the fill is pasted back on the white page"
    page.screenshot(path=str(shots / "inpaint-scan.png"), full_page=True)

    page.get_by_role("tab", name="Models").click()
    sync_api.expect(page.locator("#model-card")).to_contain_text("test bits/dim")
    page.locator("#sample-button").click()
    page.locator("#model-samples img").first.wait_for(timeout=60_000)
    sync_api.expect(page.locator("#model-samples img")).to_have_count(16)  # the default count
    page.wait_for_function("[...document.querySelectorAll('#model-samples img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    page.screenshot(path=str(shots / "models.png"), full_page=True)


def test_every_upload_is_locatable_on_the_histogram(page: sync_api.Page, tmp_path: Path) -> None:
    """Issue 18.4: with eight of ten uploads far beyond the axis, the page shows every one: ten
    numbered rows, and a histogram that grows its label rows and lists (the handler test checks
    the layout itself) instead of collapsing them into one marker."""
    rng = np.random.default_rng(0)
    noise = []
    for i in range(8):  # uniform noise scores far above the MNIST validation range
        path = tmp_path / f"noise-{i}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
        noise.append(str(path))
    digits = [str(GALLERY[0]), str(GALLERY[1])]
    rows = page.locator("#verdicts [role=row]")

    def score(paths: list[str]) -> np.ndarray:
        _reload(page)  # a fresh file list (uploads add to it)
        page.get_by_role("tab", name="Anomaly").click()
        page.locator("#anomaly-files input[type=file]").set_input_files(paths)
        page.locator("#score-button").click()
        sync_api.expect(rows.filter(has_text=Path(paths[-1]).name).first).to_be_visible(
            timeout=60_000)
        return _fetch(page, "#histogram")

    one = score(digits[:1])
    ten = score(noise + digits)
    numbers = set()
    for path in noise + digits:  # each file in its own row, under its own number
        numbers.add(int(rows.filter(has_text=Path(path).name).first.inner_text().split()[0]))
    assert numbers == set(range(1, 11))
    assert ten.shape[0] > one.shape[0], "the eight uploads beyond the axis got no labels"


def _inpaint(page: sync_api.Page) -> None:
    """Press Inpaint and wait for a new summary."""
    before = page.locator("#inpaint-summary").inner_text()
    page.locator("#inpaint-button").click()
    sync_api.expect(page.locator("#inpaint-summary")).not_to_have_text(before, timeout=110_000)
    sync_api.expect(page.locator("#inpaint-summary")).to_contain_text("missing pixels")


def _set_steps(page: sync_api.Page, steps: int) -> None:
    page.locator("#steps input[type=number]").fill(str(steps))
    page.locator("#steps input[type=number]").press("Enter")


def test_on_a_laptop_screen_the_result_and_its_plot_follow_each_run(
        page: sync_api.Page, tmp_path: Path) -> None:
    """Issue 36.1: after a change of method the plot shows the new run's dots (it kept the
    last run's: one dot after NICE's 20 steps). Issue 36.2: on a 1366 x 768 screen the Inpaint
    button is far below the fill; pressing it brings the fill into view."""
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1366, "height": 768})
    try:
        _reload(page)
        page.locator(".gallery-item").nth(GALLERY.index(EXAMPLE)).click()
        sync_api.expect(page.locator("#model input")).to_have_value("mnist-glow")
        page.locator("#inpaint-button").scroll_into_view_if_needed()
        _inpaint(page)
        box = page.locator("#filled").bounding_box()
        assert box["y"] > -1 and box["y"] + box["height"] < 769, f"fill out of view: {box}"
        sync_api.expect(page.locator("#filled img")).to_be_in_viewport()
        sync_api.expect(page.locator("#trajectory svg g.mark-symbol path")).to_have_count(1)
        for method, label, steps in (("nice", "NICE: the paper's noisy gradient ascent", 20),
                                     ("langevin", "Langevin: sampling chains (samples + "
                                                  "uncertainty)", 10)):
            _choose(page, "#method", label)
            _set_steps(page, steps)
            _inpaint(page)
            sync_api.expect(page.locator("#inpaint-summary")).to_contain_text(
                f"{method}, {steps} steps")
            sync_api.expect(page.locator("#trajectory svg g.mark-symbol path")).to_have_count(
                steps + 1)
            sync_api.expect(page.locator("#trajectory")).to_contain_text(
                "chains' images" if method == "langevin" else "bits/dim of the image")
        page.locator("#trajectory").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "inpaint-laptop.png"))
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_a_colour_upload_is_filled_where_painted_at_its_own_size(page: sync_api.Page,
                                                                 tmp_path: Path) -> None:
    """Issue 36.3: thin strokes on an upload shown at 512 px were dropped; the brush is now a
    model pixel wide and every model pixel a stroke touches is filled. Issue 36.5: the fill
    comes back at the upload's size (600 x 600, not 512). Issue 36.6: outside the mask the
    colours are the upload's own. Issue 36.8: the fill is smooth, not 28 x 28 blocks."""
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    photo = Image.new("RGB", (600, 600), (20, 30, 90))  # a pale bar on dark blue
    ImageDraw.Draw(photo).line([(300, 100), (300, 500)], fill=(250, 240, 200), width=60)
    photo.save(tmp_path / "photo.png")
    _reload(page)
    page.locator("#inpaint-file input[type=file]").set_input_files(str(tmp_path / "photo.png"))
    sync_api.expect(page.locator("#image-note")).to_contain_text("photo.png, 600x600 RGB, "
                                                                 "shown at 512x512")
    _choose(page, "#mask", "painted")
    page.locator("#editor button[aria-label='Brush']").click()
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    strokes = (-60, -30, 0, 30, 60, 90)
    for dy in strokes:  # six short strokes across the bar
        page.mouse.move(x - 20, y + dy)
        page.mouse.down()
        page.mouse.move(x + 20, y + dy, steps=3)
        page.mouse.up()
    _inpaint(page)
    sync_api.expect(page.locator("#inpaint-summary")).to_contain_text(
        "Colour upload, grayscale model")
    page.screenshot(path=str(shots / "inpaint-colour.png"))
    filled = _fetch(page, "#filled")
    view = _fetch(page, "#model-view")
    assert filled.shape == (600, 600, 3), "the fill came back at another size"
    rows = np.flatnonzero((view == (255, 0, 255)).all(axis=-1).any(axis=1))
    assert len(rows) >= len(strokes), f"strokes were dropped: masked model rows {rows}"
    original = np.asarray(photo)
    changed = (filled != original).any(axis=-1)
    assert changed[:, :150].sum() == 0 and changed[:80].sum() == 0, "pixels far off changed"
    assert changed[150:450, 250:350].any(), "nothing was filled where painted"
    steps = np.abs(np.diff(filled[150:450, 280:320].astype(int), axis=0)).max(axis=-1)
    assert steps.max() < 128, "the fill shows hard block edges"


def test_refusals_say_why_and_leave_nothing_to_clear(page: sync_api.Page,
                                                     tmp_path: Path) -> None:
    """Issue 36.10: a drawing on the blank canvas is not an image. Issue 36.9: a refused upload
    leaves the box empty and no "Error" badge behind. Issue 36.4: a file over 20 MB among
    others gets its own row; the others are scored."""
    _reload(page)
    page.locator("#editor button[aria-label='Brush']").click()
    box = page.locator("#editor canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 - 40, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2, steps=3)
    page.mouse.up()
    page.locator("#inpaint-button").click()
    sync_api.expect(page.locator(".toast-body").filter(has_text="canvas is blank")
                    ).to_contain_text("upload an image first")
    page.screenshot(path=str(tmp_path / "blank.png"))
    sync_api.expect(page.locator("#filled")).not_to_contain_text("Error", use_inner_text=True)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"plain text, renamed to .png")
    page.locator("#inpaint-file input[type=file]").set_input_files(str(fake))
    sync_api.expect(page.locator("#image-note")).to_contain_text(
        "Not loaded: fake.png: not an image this app reads")
    sync_api.expect(page.locator("#inpaint-file .file-preview")).to_have_count(0)
    sync_api.expect(page.locator("#inpaint-file")).not_to_contain_text("Error",
                                                                       use_inner_text=True)
    page.locator("#inpaint-file input[type=file]").set_input_files(str(GALLERY[0]))
    sync_api.expect(page.locator("#image-note")).to_contain_text(GALLERY[0].name)

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (21 * 2**20))
    page.get_by_role("tab", name="Anomaly").click()
    page.locator("#anomaly-files input[type=file]").set_input_files(
        [str(GALLERY[0]), str(big), str(GALLERY[1])])
    page.locator("#score-button").click()
    rows = page.locator("#verdicts [role=row]")
    sync_api.expect(rows.filter(has_text="big.png")).to_contain_text("larger than 20 MB")
    for path in (GALLERY[0], GALLERY[1]):
        sync_api.expect(rows.filter(has_text=path.name)).to_contain_text(
            re.compile("in distribution|anomalous"))


def test_each_anomaly_row_offers_its_map(page: sync_api.Page, tmp_path: Path) -> None:
    """Issue 38: the Anomaly tab's "Where?" button shows each readable file's anomaly map over
    what the model saw, captioned with its row, and a legend; a block of noise pasted over a
    digit is a hot spot, the digit alone is not."""
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    _reload(page)
    digit = np.array(Image.open(EXAMPLE).convert("L"))
    digit[2:12, 16:26] = np.random.default_rng(0).integers(0, 256, (10, 10))
    pasted = tmp_path / "pasted-noise.png"
    Image.fromarray(digit).save(pasted)
    page.get_by_role("tab", name="Anomaly").click()
    page.locator("#anomaly-files input[type=file]").set_input_files(
        [str(EXAMPLE), str(pasted)])
    page.locator("#score-button").click()
    sync_api.expect(page.locator("#verdicts [role=row]").filter(has_text="pasted-noise.png")
                    ).to_contain_text(re.compile("in distribution|anomalous"), timeout=60_000)
    page.locator("#maps-button").click()
    maps, legend = page.locator("#anomaly-maps"), page.locator("#maps-legend")
    sync_api.expect(maps.locator("img")).to_have_count(2, timeout=60_000)
    sync_api.expect(maps).to_contain_text(f"#1 {EXAMPLE.name}: no hot spot")
    sync_api.expect(maps).to_contain_text("#2 pasted-noise.png: hot spot")
    sync_api.expect(legend).to_contain_text("hot-spot level")
    # Each map whole inside the gallery's box: two maps widened to the full row ran past it,
    # hiding their colour bar labels and captions.
    box = maps.locator(".grid-wrap").bounding_box()
    for thumbnail in maps.locator(".thumbnail-item").all():
        shown = thumbnail.bounding_box()
        assert shown["y"] + shown["height"] <= box["y"] + box["height"] + 1
    top = page.locator("#verdicts").bounding_box()["y"] - 8
    bottom = legend.bounding_box()["y"] + legend.bounding_box()["height"] + 8
    page.screenshot(path=str(shots / "anomaly-maps.png"), full_page=True,
                    clip={"x": 0, "y": top, "width": 1400, "height": bottom - top})
