"""Predictions and test metrics: probabilities (with optional TTA), confusion matrix, per-class
precision/recall/F1, the most-confused pairs, the highest-loss examples, metrics.json.

Per-class figures follow the usual definitions (as sklearn's precision_recall_fscore_support
with average=None, zero_division=0): precision = TP / predicted-as-class, recall = TP / true
class size, F1 = their harmonic mean.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.atomic import make_folder, write_text
from cnnlab.errors import ConfigError, DataFormatError
from cnnlab.outputs import as_logits, ends_in_softmax

TTA_MODES = (None, "flip", "flip-translate")
# pixels of the translate views: airbench94's 1 (its infer_mirror_translate). On two fastnet-large
# models trained on Fashion-MNIST (docs/speed.md, fourth session) 1 px scored 0.09 and 0.32 points
# above 2 px, on the same weights
TTA_SHIFT = 1


def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift a batch (B, C, H, W) by (dy, dx) pixels, filling the edge by reflection."""
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def _views(x: torch.Tensor, tta: str | None) -> list[torch.Tensor]:
    """The augmented copies of a batch whose predictions are averaged."""
    if tta is None:
        return [x]
    views = [x, x.flip(-1)]  # horizontal flip: right for objects, wrong for digits/letters
    if tta == "flip-translate":
        s = TTA_SHIFT
        for v in (x, x.flip(-1)):
            views += [_translate(v, s, s), _translate(v, -s, -s)]
    return views


def tta_warning(tta: str | None, augment: dict | None) -> str | None:
    """One sentence when a flip TTA is asked of a model trained without flips, else None: it then
    sees mirror images it never learned from (an ankle boot pointing the other way), which lowers
    accuracy (the lectures' 16-32 CNN, 3 epochs on the mini set: 83.6% -> 74.8% with flip TTA)."""
    if tta not in ("flip", "flip-translate") or (augment or {}).get("flip"):
        return None
    return (f"test-time augmentation {tta!r} averages over mirror images, but this model trained without "
            "flips (augment has no flip: true), so it usually scores lower with it than without")


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def predict_log_proba(model, batches: Iterable, device=None, *, tta: str | None = None):
    """Log-probabilities (N, K) float32 on the CPU and labels (N,) int64 for every batch.

    Args:
        model: any classifier returning logits (B, K).
        batches: iterable of (x float normalised (B, C, H, W), y (B,)) such as TensorBatches.
        device: where to run; default the model's parameter device.
        tta: None, 'flip' (average with the mirror image) or 'flip-translate' (also +-1 px
            shifts of both): probabilities, not logits, are averaged.

    Returns:
        (log_probs, y): both on the CPU.
    """
    if tta not in TTA_MODES:
        raise ConfigError(f"tta={tta!r} is not a test-time augmentation; use one of "
                          f"{', '.join(repr(m) for m in TTA_MODES)}.")
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    softmax = ends_in_softmax(model)
    outs, ys = [], []
    try:
        with torch.inference_mode():
            for x, y in batches:
                x = x.to(device, non_blocking=True)
                logps = [F.log_softmax(as_logits(model(v), softmax).float(), dim=1) for v in _views(x, tta)]
                # mean of probabilities in log space: logsumexp(log p_i) - log n
                logp = torch.logsumexp(torch.stack(logps), 0) - torch.log(
                    torch.tensor(float(len(logps)), device=logps[0].device))
                outs.append(logp.cpu())
                ys.append(torch.as_tensor(y).reshape(-1).long().cpu())
    finally:
        model.train(was_training)
    if not outs:
        raise DataFormatError("The evaluation data yielded no batches; pass a non-empty test set.")
    return torch.cat(outs), torch.cat(ys)


def predict_proba(model, batches: Iterable, device=None, *, tta: str | None = None):
    """Probabilities (N, K) float32 on the CPU and labels (N,); see predict_log_proba."""
    logp, y = predict_log_proba(model, batches, device, tta=tta)
    return logp.exp(), y


def metrics_from_log_proba(logp: torch.Tensor, y: torch.Tensor) -> dict:
    """Mean cross-entropy loss, accuracy and count from log-probabilities and labels."""
    loss = F.nll_loss(logp, y.long()).item()
    acc = (logp.argmax(1) == y).float().mean().item()
    return {"loss": loss, "accuracy": acc, "n": int(y.numel())}


def evaluate_model(model, batches: Iterable, device=None, *, tta: str | None = None) -> dict:
    """Test loss (mean cross-entropy), accuracy (fraction) and n over the batches.

    Args:
        model: classifier returning logits.
        batches: iterable of (x, y) batches.
        device: where to run; default the model's device.
        tta: None | 'flip' | 'flip-translate'.

    Returns:
        {"loss": float, "accuracy": float, "n": int}
    """
    logp, y = predict_log_proba(model, batches, device, tta=tta)
    return metrics_from_log_proba(logp, y)


def confusion_matrix(y_true, y_pred, k: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class.

    Args:
        y_true: (N,) true labels in [0, k).
        y_pred: (N,) predicted labels in [0, k).
        k: number of classes.
    """
    t = torch.as_tensor(y_true).reshape(-1).long().cpu()
    p = torch.as_tensor(y_pred).reshape(-1).long().cpu()
    if t.numel() != p.numel():
        raise DataFormatError(f"confusion_matrix got {t.numel()} true labels but {p.numel()} "
                              "predictions; pass one prediction per example.")
    for name, v in (("true", t), ("predicted", p)):
        if v.numel() and (v.min() < 0 or v.max() >= k):
            raise DataFormatError(f"A {name} label lies outside 0..{k - 1} in confusion_matrix; "
                                  "pass k = the number of classes.")
    return torch.bincount(t * k + p, minlength=k * k).reshape(k, k)


def per_class_report(cm, classes: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support per class from a confusion matrix (zero when undefined)."""
    cm = torch.as_tensor(cm).long()
    tp = cm.diag().double()
    predicted = cm.sum(0).double()  # column sums: how often each class was predicted
    support = cm.sum(1)             # row sums: true class sizes
    rows = []
    for i, name in enumerate(classes):
        p = (tp[i] / predicted[i]).item() if predicted[i] > 0 else 0.0
        r = (tp[i] / support[i]).item() if support[i] > 0 else 0.0
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        rows.append({"class": str(name), "precision": p, "recall": r, "f1": f1,
                     "support": int(support[i])})
    return rows


def most_confused(cm, classes: Sequence[str], top: int = 5) -> list[dict]:
    """The off-diagonal cells with the most errors: [{"true", "pred", "count"}], largest first."""
    cm = torch.as_tensor(cm).long().clone()
    cm.fill_diagonal_(0)
    counts, flat = cm.reshape(-1).sort(descending=True, stable=True)
    k = cm.shape[0]
    out = []
    for c, f in zip(counts.tolist(), flat.tolist()):
        if c <= 0 or len(out) >= top:
            break
        out.append({"true": str(classes[f // k]), "pred": str(classes[f % k]), "count": c})
    return out


def top_losses(probs, y, k: int = 16):
    """Indices (k,) int64 of the k highest-loss examples, and their losses (k,), largest first."""
    probs = torch.as_tensor(probs).float()
    y = torch.as_tensor(y).long().reshape(-1)
    p_true = probs.gather(1, y[:, None]).squeeze(1)
    losses = -torch.log(p_true.clamp_min(1e-12))  # per-example cross-entropy, nats
    values, idx = losses.topk(min(k, losses.numel()))
    return idx, values


def write_metrics(run_dir, probs, y, classes: Sequence[str], *, tta: str | None = None,
                  top: int = 16, data: str | None = None) -> dict:
    """Write metrics.json (merged into any existing one) and confusion.csv in the run directory.

    Args:
        run_dir: the run directory.
        probs: (N, K) predicted probabilities of the test set, from predict_proba.
        y: (N,) true labels.
        classes: the K class names.
        tta: the TTA mode used (recorded).
        top: how many highest-loss examples to record (indices into the test set).
        data: the dataset spec evaluated on, recorded as "data" when given.

    Returns:
        The metrics written: test_loss, test_accuracy, n_test, tta, classes, per_class,
        macro_f1, confusion_matrix (rows = true), most_confused, top_losses (and data).
    """
    run_dir = Path(run_dir)
    probs = torch.as_tensor(probs).float()
    y = torch.as_tensor(y).long().reshape(-1)
    if probs.shape != (y.numel(), len(classes)):
        raise DataFormatError(f"write_metrics got probabilities of shape {tuple(probs.shape)} "
                              f"for {y.numel()} labels and {len(classes)} classes; they must "
                              "agree.")
    base = metrics_from_log_proba(torch.log(probs.clamp_min(1e-12)), y)
    pred = probs.argmax(1)
    cm = confusion_matrix(y, pred, len(classes))
    per_class = per_class_report(cm, classes)
    idx, losses = top_losses(probs, y, top)
    metrics = {
        "test_loss": base["loss"],
        "test_accuracy": base["accuracy"],
        "n_test": base["n"],
        "tta": tta,
        "classes": [str(c) for c in classes],
        "per_class": per_class,
        "macro_f1": sum(r["f1"] for r in per_class) / len(per_class),
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused(cm, classes, top=5),
        "top_losses": [
            {"index": int(i), "true": int(y[i]), "pred": int(pred[i]),
             "probability": float(probs[i, pred[i]]), "loss": float(v)}
            for i, v in zip(idx.tolist(), losses.tolist())
        ],
    }
    if data is not None:
        metrics["data"] = data
    make_folder(run_dir)
    path = run_dir / "metrics.json"
    merged = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            merged = {}  # an unreadable old file is replaced, not trusted
        if not isinstance(merged, dict):
            merged = {}  # nor is one that is not an object of figures
    merged.update(metrics)
    write_text(path, json.dumps(merged, indent=2) + "\n")
    write_text(run_dir / "confusion.csv", confusion_csv(cm, classes))
    return merged


def confusion_csv(cm, classes: Sequence[str]) -> str:
    """The confusion matrix as CSV text: header 'true\\pred' + class names, one row per class."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\pred", *classes])
    for name, row in zip(classes, torch.as_tensor(cm).tolist()):
        w.writerow([name, *row])
    return buf.getvalue()
