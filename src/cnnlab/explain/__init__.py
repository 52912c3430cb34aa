"""See inside a model: learning curves, confusion matrix, filters, feature maps, Grad-CAM, and
the one-page run report. Every picture function returns a matplotlib Figure (Agg, no pyplot)."""

from cnnlab.explain.confusion import confusion_figure, top_losses_figure
from cnnlab.explain.curves import curves_figure, read_history, save_curves
from cnnlab.explain.figures import save_figure
from cnnlab.explain.gradcam import GradCam, grad_cam, gradcam_figure, gradcam_layer
from cnnlab.explain.inspect import inspect_image
from cnnlab.explain.maps import (LayerMaps, conv_layers, feature_maps, filters_figure,
                                 maps_figure)
from cnnlab.explain.report import write_report

__all__ = [
    "GradCam", "LayerMaps", "confusion_figure", "conv_layers", "curves_figure", "feature_maps",
    "filters_figure", "grad_cam", "gradcam_figure", "gradcam_layer", "inspect_image",
    "maps_figure", "read_history", "save_curves", "save_figure", "top_losses_figure",
    "write_report",
]
