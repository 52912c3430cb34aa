"""Combining models: average their class probabilities, or let them vote; report members vs ensemble."""

from __future__ import annotations

from typing import Sequence

import torch

from cnnlab.errors import ConfigError


def _stack(prob_list: Sequence) -> torch.Tensor:
    """(M members, N, K) float tensor from a list of (N, K) probability arrays/tensors of equal shape."""
    if len(prob_list) == 0:
        raise ConfigError("an ensemble needs at least one member's probabilities, got none")
    probs = [torch.as_tensor(p, dtype=torch.float32).cpu() for p in prob_list]
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) != 1 or probs[0].ndim != 2:
        raise ConfigError(f"ensemble members must all give (N, K) probabilities of one shape, got {sorted(shapes)}: "
                          f"predict every member on the same data")
    return torch.stack(probs)


def ensemble_predict(prob_list: Sequence) -> torch.Tensor:
    """Average the members' probabilities: (N, K) from M tensors of (N, K).

    Args:
        prob_list: each member's softmax output on the same N examples.
    """
    return _stack(prob_list).mean(0)


def majority_vote(prob_list: Sequence) -> torch.Tensor:
    """Each member votes its argmax class; most votes wins, ties go to the higher mean probability. (N,) int64.

    Args:
        prob_list: each member's softmax output on the same N examples.
    """
    probs = _stack(prob_list)  # (M, N, K)
    k = probs.shape[2]
    votes = torch.nn.functional.one_hot(probs.argmax(2), k).sum(0).float()  # (N, K) vote counts
    # vote counts are integers; adding half the mean probability (< 1) only orders the tied classes
    return (votes + 0.5 * probs.mean(0)).argmax(1)


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())


def ensemble_report(member_names: Sequence[str], member_probs: Sequence, y_true) -> dict:
    """Each member's accuracy, their mean, and the ensemble's by averaged probabilities and by vote.

    Args:
        member_names: one label per member (e.g. run folder names).
        member_probs: each member's (N, K) probabilities on the same examples.
        y_true: (N,) true class indices.

    Returns:
        {"member_results": [{"name", "accuracy"}], "mean_member_accuracy", "best_member_accuracy",
         "ensemble_accuracy", "vote_accuracy", "gain_over_mean", "n_members", "n_examples"}.
    """
    if len(member_names) != len(member_probs):
        raise ConfigError(f"{len(member_names)} member names for {len(member_probs)} members' probabilities: "
                          f"pass one name per member")
    probs = _stack(member_probs)
    y = torch.as_tensor(y_true, dtype=torch.int64).cpu()
    if y.shape != probs.shape[1:2]:
        raise ConfigError(f"y_true has shape {tuple(y.shape)} but the members predicted {probs.shape[1]} examples: "
                          f"use the labels of the data the members predicted")
    members = [{"name": str(n), "accuracy": _accuracy(p.argmax(1), y)} for n, p in zip(member_names, probs)]
    accs = [m["accuracy"] for m in members]
    mean_acc = sum(accs) / len(accs)
    ens_acc = _accuracy(probs.mean(0).argmax(1), y)
    return {"member_results": members, "mean_member_accuracy": mean_acc, "best_member_accuracy": max(accs),
            "ensemble_accuracy": ens_acc, "vote_accuracy": _accuracy(majority_vote(probs), y),
            "gain_over_mean": ens_acc - mean_acc, "n_members": len(members), "n_examples": int(y.numel())}


def format_table(report: dict) -> str:
    """The report as an aligned text table: members, their mean, then both ensembles."""
    rows = [(m["name"], m["accuracy"]) for m in report["member_results"]]
    rows += [("mean of members", report["mean_member_accuracy"]),
             ("ensemble (average of probabilities)", report["ensemble_accuracy"]),
             ("ensemble (majority vote)", report["vote_accuracy"])]
    width = max(len(name) for name, _ in rows)
    sep = "-" * (width + 11)
    lines = [f"{'model':<{width}}  accuracy", sep]
    for i, (name, acc) in enumerate(rows):
        if i == len(report["member_results"]):
            lines.append(sep)
        lines.append(f"{name:<{width}}  {acc * 100:7.2f}%")
    gain = report["gain_over_mean"] * 100
    lines.append(f"({report['n_members']} members, {report['n_examples']} examples; "
                 f"averaging {'gains' if gain >= 0 else 'loses'} {abs(gain):.2f} points over the mean member)")
    return "\n".join(lines)
