"""The page: a model picker above three tabs, one ``build_<tab>()`` each, wired to ``Handlers``.

Every button is also an API endpoint (its ``api_name``), so ``gradio_client`` can do all that the
page does.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from ..images import MAX_FILE_BYTES, ImageError, peek_image
from ..methods import DEFAULT, METHODS
from .handlers import (
    DEFAULT_MASK,
    MASK_SOURCES,
    MAX_DRAWS,
    MAX_SAMPLES,
    MAX_STEPS,
    TABLE_COLUMNS,
    TABLE_TYPES,
    Handlers,
    brush,
    refuse,
)

# The picker's first entry: the alias, saying which method it runs (``methods.resolve``).
DEFAULT_LABEL = ("default: the model's own (conditional where it has a conditional flow, "
                 "else ascent)")
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm"]
# 28x28 images fill their boxes and stay crisp (no smoothing) when scaled up.
CSS = """.pixelated img { image-rendering: pixelated; width: 100%; height: 100%;
                      object-fit: contain; }
#verdicts img { width: 42px; height: 42px; image-rendering: pixelated;
               border: 1px solid #ccc; }
#n-samples input[type=number], #model-count input[type=number] { min-width: 4.5em; }
/* A failed run's toast says what went wrong; an "Error" badge left on each output did not go
   away until the next run (issue 36.9). */
[data-testid=status-tracker] .error, [data-testid=status-tracker] .clear-status { display: none; }
[data-testid=status-tracker].error { background: transparent; }"""
# Where the result is: the Inpaint button sits low in the left column, the fill at the top of the
# right one; a click brings the fill into view (issue 36.2).
SHOW_RESULT = ("() => document.getElementById('inpaint-result')"
               "?.scrollIntoView({block: 'nearest'})")
# The browser refuses a whole batch when one file exceeds ``max_file_size`` (Gradio's upload
# check). For the Anomaly tab's files this keeps the oversized ones out of the batch and
# remembers their names; Score sends them (``REFUSED_JS``) and each gets its own row.
HEAD = """<script>
(() => {
  const MAX = MAX_FILE_BYTES;
  window.flowpaintRefused = [];
  const within = el => el instanceof Element && el.closest("#anomaly-files");
  const split = files => {
    const kept = new DataTransfer();
    const big = [];
    for (const f of files) { if (f.size > MAX) big.push(f.name); else kept.items.add(f); }
    return [kept, big];
  };
  document.addEventListener("change", e => {
    const input = e.target;
    if (!within(input) || input.type !== "file") return;
    const [kept, big] = split(input.files);
    if (!big.length) return;
    window.flowpaintRefused.push(...big);
    input.files = kept.files;
    if (!kept.files.length) e.stopImmediatePropagation();
  }, true);
  document.addEventListener("drop", e => {
    if (!within(e.target) || e.flowpaintChecked || !e.dataTransfer) return;
    const [kept, big] = split(e.dataTransfer.files);
    if (!big.length) return;
    window.flowpaintRefused.push(...big);
    e.preventDefault();
    e.stopImmediatePropagation();
    if (!kept.files.length) return;
    const again = new DragEvent("drop", {dataTransfer: kept, bubbles: true, cancelable: true});
    again.flowpaintChecked = true;
    e.target.dispatchEvent(again);
  }, true);
})();
</script>""".replace("MAX_FILE_BYTES", str(MAX_FILE_BYTES))
REFUSED_JS = ("(files, model, normalize, refused) => "
              "[files, model, normalize, (window.flowpaintRefused || []).join('\\n')]")
FORGET_REFUSED_JS = "() => { window.flowpaintRefused = []; }"


def check_sizes(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Make ``editor`` read each image's size from its header (``peek_image``) before Gradio
    decodes it: an API call can send any image, and decoding a huge one takes seconds. Patched
    on the instance, since subclassing a Gradio component writes a .pyi stub beside this file."""
    convert = editor.convert_and_format_image

    def checked(file: FileData | bytes | None, flatten_on_white: bool = False) -> Any:
        if file is not None:
            try:
                peek_image(file.path if isinstance(file, FileData) else bytes(file)).close()
            except ImageError as err:
                raise refuse("inpaint", f"editor image: {err}") from None
        return convert(file, flatten_on_white)

    editor.convert_and_format_image = checked
    return editor


def build_inpaint(handlers: Handlers, model: gr.Dropdown
                  ) -> tuple[gr.Dropdown, list, gr.Checkbox]:
    """Upload box, editor with brush and eraser, examples, options; fill, samples, uncertainty,
    plot. Returns the method picker, the controls it sets (for the page's first load) and the
    normalize switch (its explanation follows the model)."""
    with gr.Row():
        with gr.Column():
            upload = gr.File(file_count="single", file_types=IMAGE_TYPES, type="filepath",
                             label=f"Upload an image (at most {MAX_FILE_BYTES // 2**20} MB), "
                                   "or pick an example below", height=150,
                             elem_id="inpaint-file")
            editor = check_sizes(gr.ImageEditor(
                type="pil", image_mode="RGBA", format="png", sources=(),
                brush=brush(1), eraser=gr.Eraser(default_size=2), layers=False,
                transforms=(), height=420,
                label="Image: paint over the pixels to fill (brush), eraser to undo",
                elem_id="editor", elem_classes="pixelated"))
            note = gr.Markdown(elem_id="image-note")
            original = gr.State()  # the upload itself, where the editor shows a smaller copy
            examples = (gr.Examples([[str(example.path)] for example, _ in handlers.examples],
                                    inputs=[editor], examples_per_page=12,
                                    label="Examples: each model's own images (each selects "
                                          "its model and a mask)")
                        if handlers.examples else None)
            with gr.Row():
                mask = gr.Dropdown(list(MASK_SOURCES), value=DEFAULT_MASK, label="Mask",
                                   info="a preset, or painted: your brush strokes",
                                   elem_id="mask")
                method = gr.Dropdown([(DEFAULT_LABEL, DEFAULT),
                                      *((m.label, name) for name, m in METHODS.items())],
                                     value=DEFAULT, label="Method", elem_id="method")
            with gr.Row():
                steps = gr.Slider(0, MAX_STEPS, value=0, step=5, label="Steps", scale=2,
                                  info="0 = the method's default", elem_id="steps")
                n_samples = gr.Slider(0, MAX_SAMPLES, value=0, step=1, label="Samples",
                                      info="0 = the method's default", elem_id="n-samples",
                                      min_width=200)
                seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="seed")
            normalize = gr.Checkbox(True, label="Normalize the input", elem_id="inpaint-normalize",
                                    info=handlers.normalize_info(handlers.cache.default))
            run = gr.Button("Inpaint", variant="primary", elem_id="inpaint-button")
            where = gr.Button("Where would the model change this image?", elem_id="where-button")
        with gr.Column():
            with gr.Column(elem_id="inpaint-result"):
                with gr.Row():
                    view = gr.Image(label="As the model sees it (missing = magenta)",
                                    height=260, elem_id="model-view", elem_classes="pixelated",
                                    format="png")
                    filled = gr.Image(label="Filled", height=260, elem_id="filled",
                                      elem_classes="pixelated", format="png")
                summary = gr.Markdown(label="summary", elem_id="inpaint-summary")
            samples = gr.Gallery(label="Samples (n > 1)", columns=4, height=480,
                                 elem_classes="pixelated", format="png")
            uncertainty = gr.Image(label="Uncertainty: per-pixel std of the samples",
                                   height=200, elem_classes="pixelated", format="png")
            where_map = gr.Image(label="Where the model would change it (anomaly map, in the "
                                       "image's own frame)", height=300, elem_id="where-map",
                                 format="png")
            where_note = gr.Markdown(elem_id="where-note")
    # Dots, not a line: a run without steps has one value, which a line plot leaves blank.
    trajectory = gr.ScatterPlot(x="step", y="bits/dim", y_title="bits per dim",
                                label="what the method climbs, per step", height=240,
                                elem_id="trajectory")
    with gr.Accordion("Metrics (JSON)", open=False):
        metrics = gr.JSON(label="metrics")
    upload.upload(handlers.upload, [upload, model], [upload, editor, note, original],
                  api_name="load_image")
    if examples is not None:
        examples.dataset.select(handlers.example, None, [model, mask, note, original, editor],
                                api_visibility="private")
    controls = [steps, n_samples, seed, method]
    for source in (method, model):
        source.change(handlers.controls, [method, model], controls, api_visibility="private")
    run.click(None, js=SHOW_RESULT)
    run.click(handlers.inpaint,
              [editor, model, mask, method, steps, n_samples, seed, normalize, original],
              [filled, samples, uncertainty, trajectory, view, summary, metrics],
              api_name="inpaint")
    where.click(handlers.where, [editor, model, normalize, original], [where_map, where_note],
                api_name="where")
    return method, controls, normalize


def build_anomaly(handlers: Handlers, model: gr.Dropdown) -> gr.Checkbox:
    """Upload images; a verdict per image and the calibration histogram with the uploads.
    Returns the normalize switch."""
    files = gr.File(file_count="multiple", file_types=IMAGE_TYPES, type="filepath",
                    label="Images (one or many)", elem_id="anomaly-files")
    normalize = gr.Checkbox(True, label="Normalize the input", elem_id="score-normalize",
                            info=handlers.normalize_info(handlers.cache.default))
    run = gr.Button("Score", variant="primary", elem_id="score-button")
    table = gr.Dataframe(headers=TABLE_COLUMNS, datatype=TABLE_TYPES, interactive=False,
                         label="Verdicts", elem_id="verdicts", wrap=True, max_height=640,
                         column_widths=["4%", "8%", "14%", "34%", "8%", "8%", "8%", "16%"])
    # Maps cost a few hundred ms an image: computed only when asked.
    show_maps = gr.Button("Where? Each row's anomaly map", elem_id="maps-button")
    # Three columns however few maps: Gradio widens fewer maps to the full row, and a square
    # thumbnail that wide ran past the gallery's height (55% of the window), hiding each map's
    # colour bar labels and caption; a fourth column left the caption over the labels.
    maps = gr.Gallery(label="Where: anomaly maps, by row #", columns=3, height="auto",
                      fit_columns=False, object_fit="contain", format="png",
                      elem_id="anomaly-maps")
    legend = gr.Markdown(elem_id="maps-legend")
    # The caption above, not as the image's label: Gradio's label box hid the picture's title.
    gr.Markdown("**Validation scores** (bars), threshold (red), uploads by row # (orange; "
                "beyond the axis: listed under it)", elem_id="histogram-caption")
    histogram = gr.Image(label="histogram", show_label=False, elem_id="histogram",
                         format="png")
    note = gr.Markdown(label="explanation")
    refused = gr.Textbox("", visible=False, label="refused",
                         info="files the page kept back for their size, one name a line")
    run.click(handlers.score, [files, model, normalize, refused], [table, histogram, note],
              api_name="score", js=REFUSED_JS)
    show_maps.click(handlers.maps, [files, model, normalize], [maps, legend],
                    api_name="anomaly_map")
    files.clear(None, js=FORGET_REFUSED_JS)
    return normalize


def build_models(handlers: Handlers, model: gr.Dropdown) -> gr.Markdown:
    """The selected model's card, samples at a chosen temperature, and the bundles of the
    models folder that were skipped at start, with why."""
    card = gr.Markdown(label="card", elem_id="model-card")
    with gr.Row():
        temperature = gr.Slider(0.05, 1.5, value=0.7, step=0.05, label="Temperature",
                                info="scales the latent: lower = cleaner, less varied")
        count = gr.Slider(1, MAX_DRAWS, value=16, step=1, label="Samples", min_width=200,
                          elem_id="model-count")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    draw = gr.Button("Sample", variant="primary", elem_id="sample-button")
    gallery = gr.Gallery(label="Samples", columns=8, height=300, elem_classes="pixelated",
                         format="png", elem_id="model-samples")
    inputs = [model, count, temperature, seed]
    draw.click(handlers.sample, inputs, gallery, api_name="sample")
    temperature.release(handlers.sample, inputs, gallery, api_visibility="private")
    model.change(handlers.card, model, card, api_name="model_card")
    skipped = handlers.skipped()
    if skipped:
        gr.Markdown(skipped, elem_id="skipped-models")
    return card


def build_app(handlers: Handlers) -> gr.Blocks:
    """The whole page over one set of handlers (and so one model cache)."""
    cache = handlers.cache
    with gr.Blocks(title="flowpaint", analytics_enabled=False) as demo:  # no calls home
        gr.Markdown("# flowpaint\nExact likelihoods from normalizing flows: fill in missing "
                    "pixels, flag images the model has not seen the like of, browse the models.")
        model = gr.Dropdown(cache.names, value=cache.default, label="Model",
                            info="every model of the models folder that loaded"
                                 + (" (the Models tab lists those skipped)"
                                    if cache.skipped else ""), elem_id="model")
        with gr.Tabs():
            with gr.Tab("Inpaint", id="inpaint"):
                method, controls, normalize_inpaint = build_inpaint(handlers, model)
            with gr.Tab("Anomaly", id="anomaly"):
                normalize_score = build_anomaly(handlers, model)
            with gr.Tab("Models", id="models"):
                card = build_models(handlers, model)
        demo.load(handlers.card, model, card, api_visibility="private")
        demo.load(handlers.controls, [method, model], controls, api_visibility="private")
        model.change(handlers.normalize_infos, model, [normalize_inpaint, normalize_score],
                     api_visibility="private")
    return demo
