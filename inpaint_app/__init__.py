"""flowpaint: flow-based image likelihoods for inpainting and anomaly detection."""

from .bundle import ModelBundle, load_bundle
from .card import Measurement, ModelCard
from .density import DensityModel
from .models import build_model, load_model, save_model

__all__ = ["DensityModel", "Measurement", "ModelBundle", "ModelCard", "build_model",
           "load_bundle", "load_model", "save_model"]
