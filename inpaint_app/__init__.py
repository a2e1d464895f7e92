"""flowpaint: flow-based image likelihoods for inpainting and anomaly detection."""

from .density import DensityModel
from .models import build_model, load_model, save_model

__all__ = ["DensityModel", "build_model", "load_model", "save_model"]
