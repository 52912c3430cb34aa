"""report.html: one self-contained page for a run (images as data URIs, CSS inline, no JS).

Every number on the page is read from the run's files: test figures from metrics.json, the
curves and the history table from history.csv, settings from config.json. The model (for the
summary, filters, feature maps and Grad-CAM) comes from the run's weights via cnnlab.runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
from pathlib import Path

import torch

from cnnlab import __version__
from cnnlab.errors import CnnlabError, DataFormatError
from cnnlab.atomic import write_text
from cnnlab.explain.confusion import confusion_figure, top_losses_figure
from cnnlab.explain.curves import curves_figure, read_history
from cnnlab.explain.gradcam import grad_cam, gradcam_figure, gradcam_layer
from cnnlab.explain.html import Markup, css, esc, figure, fmt, section, table
from cnnlab.explain.inspect import normalise, topk
from cnnlab.explain.maps import conv_layers, conv_weight, feature_maps, filters_figure, maps_figure

log = logging.getLogger(__name__)

SECTIONS = [("config", "Configuration"), ("model", "Model"), ("curves", "Learning curves"),
            ("metrics", "Test metrics"), ("confusion", "Confusion matrix"),
            ("confused", "Most-confused pairs"), ("losses", "Top losses"), ("filters", "Filters"),
            ("maps", "Feature maps"), ("gradcam", "Grad-CAM and predictions")]


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path} is not valid JSON ({e}); re-run `cnnlab evaluate` to "
                              "rewrite it.") from e
    if not isinstance(values, dict):
        raise DataFormatError(f"{path} is not a JSON object ({{...}}) as cnnlab writes it; re-run "
                              "`cnnlab evaluate` to rewrite it.")
    return values


def _load_run(run_dir: Path):
    """The run via cnnlab.runs.load_run, or None (model sections are then left out)."""
    try:
        from cnnlab.runs import load_run
    except ImportError:
        return None
    try:
        return load_run(run_dir)
    except CnnlabError as e:
        log.warning("report without the model: %s", e)
        return None


def _pct(x) -> str:
    return f"{float(x):.2%}" if x is not None else "n/a"


def _header(name, config, metrics, history) -> str:
    versions = {k: v for k, v in _flatten(config).items() if "version" in k.lower()}
    if not any(_version_label(k) == "cnnlab" for k in versions):
        versions["cnnlab"] = __version__
    date = next((str(config[k]) for k in ("created", "date", "started", "time") if k in config),
                None)
    model = config.get("model", "?")
    data = config.get("data", config.get("dataset", "?"))
    best = max((r["val_acc"] for r in history if isinstance(r.get("val_acc"), float)),
               default=None)
    kpis = [("test accuracy", _pct(metrics.get("test_accuracy"))),
            ("test loss", fmt(metrics["test_loss"]) if "test_loss" in metrics else "n/a"),
            ("best val accuracy", _pct(best)), ("epochs", str(len(history))),
            ("test images", fmt(metrics["n_test"]) if "n_test" in metrics else "n/a")]
    meta = " · ".join(f"<b>{esc(k)}</b> {esc(v)}" for k, v in
                      [("model", model), ("data", data), ("date", date or "?")]
                      + [(_version_label(k), v) for k, v in versions.items()])
    kp = "".join(f'<div class="kpi"><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>' for k, v in kpis)
    toc = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in SECTIONS)
    return (f"<header><h1>{esc(name)}</h1><p class=meta>{meta}</p><dl class=kpis>{kp}</dl>"
            f'</header><nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>')


def _version_label(key: str) -> str:
    """'versions.torch_version' -> 'torch'."""
    last = key.rsplit(".", 1)[-1]
    return last.replace("_version", "").replace("version", "") or key


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_section(config: dict) -> str:
    rows = [(k, fmt(v, exact=True)) for k, v in _flatten(config).items()]  # as config.json holds them
    body = table(["setting", "value"], rows, numeric=[False, False], cls="kv") if rows else ""
    return section("config", "Configuration", body, "" if rows else "config.json is missing.")


def _summary_section(run) -> str:
    if run is None:
        return section("model", "Model", "", "The model could not be loaded from this run.")
    try:
        from cnnlab.summary import summarize

        s = summarize(run.model, tuple(run.input_shape)).to_dict()
    except (ImportError, CnnlabError) as e:
        return section("model", "Model", "", f"No summary table: {e}")
    rows = s.get("rows", s.get("layers", [])) if isinstance(s, dict) else list(s)
    if not rows:
        return section("model", "Model", "", "The summary has no layers.")
    header = list(rows[0].keys())
    cells = [[_summary_cell(r.get(h)) for h in header] for r in rows]
    body = table([h.replace("_", " ") for h in header], cells, cls="summary")
    totals = {k: v for k, v in s.items() if not isinstance(v, list)} if isinstance(s, dict) else {}
    if totals:
        body += table(["total", "value"], [(k.replace("_", " "), v) for k, v in totals.items()],
                      cls="kv")
    return section("model", "Model", body,
                   "Every layer's output shape from OH = (H + 2P - FH) / S + 1, parameters and "
                   "multiply-accumulates per image.")


def _summary_cell(v):
    """Summary values as text: shapes '(32, 14, 14)', RF dicts 'size 5x5, jump 2x2', arithmetic
    one step per line."""
    if isinstance(v, (list, tuple)) and not v:
        return ""
    if isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v):
        return Markup('<span class="arith">' + "<br>".join(esc(a) for a in v) + "</span>")
    if isinstance(v, dict):
        return ", ".join(f"{k} " + ("x".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x))
                         for k, x in v.items())
    return v


def _curves_section(history) -> str:
    if not history:
        return section("curves", "Learning curves", "", "history.csv is missing or empty.")
    body = figure(curves_figure(history), "loss and accuracy curves",
                  "Left: cross-entropy loss. Right: accuracy. Train (blue) vs validation (red).")
    cols = list(history[0].keys())
    body += ("<details><summary>History table (history.csv)</summary>"
             + table(cols, [[r.get(c) for c in cols] for r in history]) + "</details>")
    return section("curves", "Learning curves", body)


def _metrics_sections(metrics, classes, test_data, mean, std, trained: bool = True) -> str:
    if "per_class" not in metrics:
        note = ("metrics.json has no test figures yet; run `cnnlab evaluate RUN`." if trained else
                "This folder (a model.save folder) names no dataset of its own, so it has no test figures: "
                "`cnnlab evaluate RUN --data D` writes them to RUN/evaluate/D/, not on this page.")
        return "".join(section(a, t, "", note) for a, t in SECTIONS[3:7])
    kv = [("test accuracy", _pct(metrics["test_accuracy"])),
          ("test loss (cross-entropy)", fmt(metrics["test_loss"])),
          ("test images", fmt(metrics["n_test"])), ("macro F1", fmt(metrics.get("macro_f1"))),
          ("test-time augmentation", metrics.get("tta") or "none")]
    per = [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]]
           for r in metrics["per_class"]]
    out = section("metrics", "Test metrics",
                  table(["metric", "value"], kv, numeric=[False, True], cls="kv")
                  + "<h3>Per class</h3>"
                  + table(["class", "precision", "recall", "F1", "support"], per))
    cm_classes = metrics.get("classes", classes)
    out += section("confusion", "Confusion matrix", figure(
        confusion_figure(metrics["confusion_matrix"], cm_classes), "confusion matrix",
        "Rows: true class; columns: predicted. Left: counts; right: each row divided by its "
        "class size (recall on the diagonal). Also in confusion.csv."))
    pairs = [[p["true"], p["pred"], p["count"]] for p in metrics.get("most_confused", [])]
    out += section("confused", "Most-confused pairs",
                   table(["true class", "predicted as", "count"], pairs) if pairs else "",
                   "" if pairs else "No misclassifications.")
    out += section("losses", "Top losses", _losses_body(metrics, cm_classes, test_data, mean, std))
    return out


def _losses_body(metrics, classes, test_data, mean, std) -> str:
    tops = metrics.get("top_losses", [])
    if test_data is None or not tops:
        return '<p class="note">Pass the test set to write_report to show these images.</p>'
    if not all({"index", "true", "pred", "probability", "loss"} <= t.keys() for t in tops):
        return ('<p class="note">metrics.json has no complete top-loss records; re-run '
                '<code>cnnlab evaluate RUN</code>.</p>')
    x_test = test_data[0]
    idx = torch.tensor([t["index"] for t in tops])
    fig = top_losses_figure(x_test[idx], [t["true"] for t in tops], [t["pred"] for t in tops],
                            [t["probability"] for t in tops], classes,
                            losses=[t["loss"] for t in tops], mean=mean, std=std)
    return figure(fig, "highest-loss test images",
                  "The test images the model got most wrong (red) or least sure about.")


def _model_sections(run, examples, maps_layers) -> str:
    if run is None:
        note = "The model could not be loaded from this run."
        return "".join(section(a, t, "", note) for a, t in SECTIONS[7:])
    model, classes = run.model, list(run.classes)
    convs = conv_layers(model)
    if not convs:
        note = "This model has no convolution."
        return "".join(section(a, t, "", note) for a, t in SECTIONS[7:])
    w = conv_weight(model, convs[0])
    out = section("filters", "Filters", figure(
        filters_figure(w, rgb=w.shape[1] == 3, title=f"first convolution ({convs[0]})"),
        "filters of the first convolution", "Red weights are positive, blue negative."))
    if not examples:
        note = "No example images were given (`cnnlab report RUN --examples N` shows N)."
        return out + section("maps", "Feature maps", "", note) + section(
            "gradcam", "Grad-CAM and predictions", "", note)
    device = next(iter(model.parameters())).device
    xs = [normalise(img, run.mean, run.std).to(device) for img, _ in examples]
    picked = maps_layers or list(dict.fromkeys([convs[0], convs[len(convs) // 2], convs[-1]]))
    body = ""
    for name, lm in feature_maps(model, xs[0], picked).items():
        body += (f"<h3>Layer {esc(name)}</h3><div class=grid2>"
                 + figure(maps_figure(lm.pre, "feature maps (before activation)",
                                      max_channels=16), f"feature maps of {name}")
                 + figure(maps_figure(lm.post, "activation maps (after activation)",
                                      max_channels=16), f"activation maps of {name}")
                 + "</div>")
    label0 = classes[int(examples[0][1])]
    out += section("maps", "Feature maps", body,
                   f"What the convolutions see for the first example (true class: {label0}); each "
                   "channel is scaled to its own range.")
    cards, target = "", gradcam_layer(model, xs[0])
    for (img, label), x in zip(examples, xs):
        gc = grad_cam(model, x, target)
        pred, p = gc.class_index, float(gc.probs[gc.class_index])
        ok = "good" if pred == int(label) else "bad"
        fig = gradcam_figure(img, gc.cam, f"true {classes[int(label)]}, predicted "
                             f"{classes[pred]} ({p:.2f})")
        rows = [[t["class"], Markup(f'<span class="{ok if t["index"] == pred else ""}">'
                                    f'{t["probability"]:.2%}</span>')] for t in topk(gc.probs, classes)]
        cards += (f'<div class="example">{figure(fig, "Grad-CAM overlay")}'
                  + table(["top-3 prediction", "probability"], rows, numeric=[False, True])
                  + "</div>")
    out += section("gradcam", "Grad-CAM and predictions", cards,
                   f"Where the evidence for the predicted class sits (Selvaraju et al. 2017), at "
                   f"the last convolution with more than one pixel of output ({target}).")
    return out


def pick_examples(x_test, y_test, n: int = 4) -> list[tuple[torch.Tensor, int]]:
    """The first test image of each of the first n classes present: [(uint8 (C, H, W), label)]."""
    seen, out = set(), []
    if n <= 0:
        return out
    for i, y in enumerate(torch.as_tensor(y_test).tolist()):
        if y not in seen:
            seen.add(y)
            out.append((x_test[i], int(y)))
            if len(out) == n:
                break
    return out


def write_report(run_dir, *, examples=None, test_data=None, run=None, n_examples: int = 4,
                 maps_layers=None) -> Path:
    """Write report.html in the run directory and return its path.

    Args:
        run_dir: the run directory (config.json, history.csv, metrics.json, model files).
        examples: [(uint8 image (C, H, W), label)] for feature maps and Grad-CAM; default the
            first test image of each of the first n_examples classes in test_data.
        test_data: (x_test uint8 (N, C, H, W), y_test (N,)), the run's test set: gives the
            top-loss images (indices recorded in metrics.json) and the default examples.
        run: an already loaded cnnlab.runs.Run (else loaded from run_dir; without one the model
            sections say so instead).
        n_examples: how many default examples.
        maps_layers: convolution names for the feature-map section (default first, middle, last).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataFormatError(f"Run directory {str(run_dir)!r} does not exist; pass the folder "
                              "a training run wrote.")
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    hist_path = run_dir / "history.csv"
    history = read_history(hist_path) if hist_path.exists() else []
    run = run if run is not None else _load_run(run_dir)
    classes = list(run.classes) if run is not None else metrics.get("classes", [])
    mean, std = (run.mean, run.std) if run is not None else (None, None)
    if examples is None and test_data is not None:
        examples = pick_examples(test_data[0], test_data[1], n_examples)
    made = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = (_header(run_dir.name, config, metrics, history) + _config_section(config)
            + _summary_section(run) + _curves_section(history)
            + _metrics_sections(metrics, classes, test_data, mean, std, trained=bool(config))
            + _model_sections(run, examples, maps_layers)
            + f"<footer>Written by cnnlab {esc(__version__)} (torch {esc(torch.__version__)}, "
              f"Python {esc(platform.python_version())}) on {esc(made)}.</footer>")
    page = ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>cnnlab report: {esc(run_dir.name)}</title><style>{css()}</style></head>"
            f'<body><main class="page">{body}</main></body></html>\n')
    path = run_dir / "report.html"
    write_text(path, page)
    return path
