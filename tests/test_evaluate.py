"""Predictions, TTA, confusion matrix, per-class figures, top losses, metrics.json."""

import csv
import io
import json

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError, DataFormatError
from cnnlab.evaluate import (confusion_matrix, evaluate_model, most_confused, per_class_report,
                             predict_proba, top_losses, write_metrics)
from _explain_helpers import CLASSES, normalise_batch, tiny_cnn, tiny_data


def _batches(x, y, size=7):
    xs = normalise_batch(x)
    return [(xs[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def test_predict_proba_matches_softmax_of_logits_and_restores_mode():
    model = tiny_cnn().train()
    x, y = tiny_data(n=20)
    probs, yy = predict_proba(model, _batches(x, y))
    model.eval()
    with torch.no_grad():
        expect = torch.softmax(model(normalise_batch(x)), 1)
    assert probs.dtype == torch.float32 and probs.shape == (20, 3)
    torch.testing.assert_close(probs, expect, rtol=1e-5, atol=1e-6)
    assert torch.equal(yy, y)
    model.train()
    predict_proba(model, _batches(x, y))
    assert model.training  # the caller's mode survives


def test_tta_flip_averages_probabilities_of_image_and_mirror():
    model = tiny_cnn()
    x, y = tiny_data(n=9)
    xs = normalise_batch(x)
    probs, _ = predict_proba(model, [(xs, y)], tta="flip")
    with torch.no_grad():
        expect = (torch.softmax(model(xs), 1) + torch.softmax(model(xs.flip(-1)), 1)) / 2
    torch.testing.assert_close(probs, expect, rtol=1e-5, atol=1e-6)
    full, _ = predict_proba(model, [(xs, y)], tta="flip-translate")
    torch.testing.assert_close(full.sum(1), torch.ones(9))
    assert not torch.allclose(full, probs)  # the shifted views change the answer


def test_flip_tta_on_a_model_trained_without_flips_is_warned_about():
    from cnnlab.evaluate import tta_warning

    assert "trained without flips" in tta_warning("flip", None)
    assert "trained without flips" in tta_warning("flip-translate", {"translate": 2})
    assert "trained without flips" in tta_warning("flip", {"flip": False})
    assert tta_warning("flip", {"flip": True}) is None
    assert tta_warning("flip-translate", {"flip": "alternating"}) is None
    assert tta_warning(None, None) is None


def test_unknown_tta_is_a_config_error():
    with pytest.raises(ConfigError, match="flip-translate"):
        predict_proba(tiny_cnn(), [], tta="rotate")


def test_evaluate_model_loss_is_cross_entropy_over_the_whole_set():
    model = tiny_cnn()
    x, y = tiny_data(n=25)
    out = evaluate_model(model, _batches(x, y, size=4))
    with torch.no_grad():
        logits = model(normalise_batch(x))
    assert out["n"] == 25
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_confusion_matrix_counts_pairs_and_sums_to_n():
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 4, (200,), generator=g)
    p = torch.randint(0, 4, (200,), generator=g)
    cm = confusion_matrix(t, p, 4)
    assert cm.dtype == torch.int64 and int(cm.sum()) == 200
    for i in range(4):
        for j in range(4):
            assert cm[i, j] == int(((t == i) & (p == j)).sum())


def test_confusion_matrix_rejects_labels_out_of_range():
    with pytest.raises(DataFormatError, match="outside 0..2"):
        confusion_matrix([0, 1, 3], [0, 1, 2], 3)


def test_per_class_report_matches_hand_computation():
    # true 0: 3 right, 1 called 1; true 1: 2 right; true 2: 1 called 0, none right
    cm = torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 0]])
    rows = per_class_report(cm, CLASSES)
    # class 0: P = 3/4, R = 3/4; class 1: P = 2/3, R = 1; class 2: nothing predicted -> 0
    assert rows[0] == pytest.approx({"class": "zero", "precision": 0.75, "recall": 0.75,
                                     "f1": 0.75, "support": 4})
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0
    assert rows[1]["f1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert rows[2] == {"class": "two", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_most_confused_orders_off_diagonal_cells():
    cm = torch.tensor([[9, 1, 4], [0, 8, 2], [5, 0, 7]])
    pairs = most_confused(cm, CLASSES, top=3)
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [
        ("two", "zero", 5), ("zero", "two", 4), ("one", "two", 2)]


def test_top_losses_are_the_largest_cross_entropies():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    y = torch.tensor([0, 0, 1, 1])
    idx, losses = top_losses(probs, y, k=2)
    assert idx.tolist() == [1, 2]  # p_true = 0.2 then 0.4
    torch.testing.assert_close(losses, -torch.log(torch.tensor([0.2, 0.4])))


def test_write_metrics_files_agree_with_the_predictions(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"best_epoch": 7, "test_loss": 99.0}))
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(40, 3, generator=g), 1)
    y = torch.randint(0, 3, (40,), generator=g)
    m = write_metrics(tmp_path, probs, y, CLASSES, tta="flip", top=5)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m))
    assert saved["best_epoch"] == 7  # earlier keys are kept, stale ones replaced
    assert saved["n_test"] == 40 and saved["tta"] == "flip"
    assert saved["test_loss"] == pytest.approx(F.nll_loss(probs.log(), y).item(), rel=1e-5)
    assert saved["test_accuracy"] == pytest.approx((probs.argmax(1) == y).float().mean().item())
    cm = torch.tensor(saved["confusion_matrix"])
    assert int(cm.sum()) == 40 and torch.equal(cm, confusion_matrix(y, probs.argmax(1), 3))
    assert [r["support"] for r in saved["per_class"]] == torch.bincount(y, minlength=3).tolist()
    assert [t["index"] for t in saved["top_losses"]] == top_losses(probs, y, 5)[0].tolist()
    rows = list(csv.reader(io.StringIO((tmp_path / "confusion.csv").read_text())))
    assert rows[0] == ["true\\pred", *CLASSES]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == cm.tolist()


def test_write_metrics_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(DataFormatError, match="must agree"):
        write_metrics(tmp_path, torch.ones(4, 2) / 2, torch.zeros(4), CLASSES)


def test_write_metrics_replaces_an_old_file_that_is_not_an_object(tmp_path):
    (tmp_path / "metrics.json").write_text("[1, 2]")
    probs, y = torch.tensor([[0.9, 0.05, 0.05]]), torch.tensor([0])
    write_metrics(tmp_path, probs, y, CLASSES)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_test"] == 1
