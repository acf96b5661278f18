"""Transferability scores: how well a pretrained model's features (or its source head's
predictions) suit a labelled dataset, from one forward pass, without fine-tuning.

* :func:`logme`: LogME (You et al. 2021), the log marginal evidence of a Bayesian linear
  regression from the features to each one-hot label column, maximised over its two
  hyperparameters (prior precision alpha, noise precision beta) and averaged over classes, per
  example. Higher is better. One eigendecomposition of ``F^T F`` (or ``F F^T`` when there are
  fewer examples than dimensions) serves every class, and the fixed-point updates run for all
  classes at once.
* :func:`leep`: LEEP (Nguyen et al. 2020), from the source head's class probabilities: the mean
  log-likelihood of the labels under the "expected empirical predictor" P(y | z) theta(x)_z.
* :func:`nce`: NCE (Tran et al. 2019), the negative conditional entropy H(Y | Z) of the labels given
  the source head's top class.
* :func:`probe_accuracy`: the stratified k-fold accuracy of a ridge (least-squares) linear probe,
  the ridge strength the best of a small grid; one Gram matrix for all folds.

All take NumPy arrays (or anything ``np.asarray`` reads) and return a float.
"""

from __future__ import annotations

import math

import numpy as np


def logme(features, labels, *, max_iterations: int = 100, tolerance: float = 1e-6) -> float:
    """LogME of ``features`` [N, D] for integer ``labels`` [N]: the maximised log evidence per
    example, averaged over the classes present (each a one-hot regression target). ``labels``
    [N, K] of real values are the regression targets themselves (several labels as 0 / 1
    columns, numbers standardised), averaged over the K columns."""
    evidence, _, _ = logme_evidence(features, labels, max_iterations=max_iterations,
                                    tolerance=tolerance)  # fmt: skip
    return float(evidence.mean())


def logme_evidence(features, labels, *, max_iterations: int = 100, tolerance: float = 1e-6):
    """Per class: (log evidence / N, alpha, beta) at the fixed point of the evidence updates.

    For a target ``y`` and features ``F`` with eigenvalues ``s`` of ``F^T F`` and projections
    ``x = V^T F^T y``, the posterior mean is ``m = beta x / (alpha + beta s)``, and

        gamma = sum beta s / (alpha + beta s),  alpha <- gamma / |m|^2,
        beta <- (N - gamma) / |y - F m|^2,
        log p(y) = D/2 log alpha + N/2 log beta - beta/2 |y - F m|^2 - alpha/2 |m|^2
                   - 1/2 sum_D log(alpha + beta s) - N/2 log 2 pi.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or y.ndim not in (1, 2) or len(f) != len(y):
        raise ValueError(f"logme: features {f.shape} and labels {y.shape} do not match")
    n, d = f.shape
    if y.ndim == 2:  # real-valued targets, one column each
        targets = y.astype(np.float64)
    else:
        classes = np.unique(y)
        targets = (y[:, None] == classes[None, :]).astype(np.float64)  # [N, K] one-hot columns
    if n >= d:
        s, v = np.linalg.eigh(f.T @ f)  # [D], [D, D]
        x = v.T @ (f.T @ targets)  # [D, K]
    else:  # fewer examples than dimensions: the nonzero spectrum from F F^T
        s_n, u = np.linalg.eigh(f @ f.T)  # [N], [N, N]
        s_n = np.clip(s_n, 0.0, None)
        x_n = np.sqrt(s_n)[:, None] * (u.T @ targets)  # sigma_i * u_i^T y
        s = np.concatenate([s_n, np.zeros(d - n)])
        x = np.concatenate([x_n, np.zeros((d - n, targets.shape[1]))])
    s = np.clip(s, 0.0, None)[:, None]  # [D, 1]
    y_norm = (targets**2).sum(0)  # [K]
    alpha = np.ones(targets.shape[1])
    beta = np.ones(targets.shape[1])
    for _ in range(max_iterations):
        denominator = alpha + beta * s  # [D, K]
        m = beta * x / denominator
        gamma = (beta * s / denominator).sum(0)
        m2 = (m**2).sum(0)
        residual = np.maximum(y_norm - 2 * (m * x).sum(0) + (s * m**2).sum(0), 1e-12)
        new_alpha = gamma / np.maximum(m2, 1e-12)
        new_beta = (n - gamma) / residual
        done = np.all(np.abs(new_alpha - alpha) <= tolerance * alpha) and np.all(
            np.abs(new_beta - beta) <= tolerance * beta
        )
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denominator = alpha + beta * s
    m = beta * x / denominator
    m2 = (m**2).sum(0)
    residual = np.maximum(y_norm - 2 * (m * x).sum(0) + (s * m**2).sum(0), 1e-12)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * residual
        - alpha / 2 * m2
        - 0.5 * np.log(denominator).sum(0)
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence / n, alpha, beta


def _joint(source_probs, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels)
    if theta.ndim != 2 or len(theta) != len(y):
        raise ValueError(f"source probabilities {theta.shape} and labels {y.shape} do not match")
    classes, index = np.unique(y, return_inverse=True)
    one_hot = np.eye(len(classes))[index]  # [N, Y]
    return theta, one_hot, index


def leep(source_probs, labels) -> float:
    """LEEP of the source head's probabilities ``source_probs`` [N, Z] for ``labels`` [N]
    (higher is better; at most 0)."""
    theta, one_hot, index = _joint(source_probs, labels)
    joint = one_hot.T @ theta / len(theta)  # P(y, z) [Y, Z]
    conditional = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    expected = theta @ conditional.T  # [N, Y]
    return float(np.mean(np.log(np.maximum(expected[np.arange(len(theta)), index], 1e-300))))


def nce(source_probs, labels) -> float:
    """NCE: minus the conditional entropy of ``labels`` given the source head's top class
    (higher is better; at most 0)."""
    theta, one_hot, _ = _joint(source_probs, labels)
    top = np.eye(theta.shape[1])[theta.argmax(1)]  # [N, Z] hard source labels
    joint = one_hot.T @ top / len(theta)  # [Y, Z]
    marginal = joint.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / marginal), 0.0)
    return float(terms.sum())


def label_entropy(labels) -> float:
    """H(Y) of the empirical label distribution, in nats."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


RIDGE_STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def stratified_folds(labels, folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0..folds-1) of each example: each class shuffled, then dealt round-robin."""
    index = np.unique(np.asarray(labels), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(index), dtype=np.int64)
    for label in range(int(index.max()) + 1):
        members = rng.permutation(np.flatnonzero(index == label))
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of


def probe_accuracy(features, labels, *, folds: int = 5, seed: int = 0,
                   strengths=RIDGE_STRENGTHS) -> tuple[float, int] | None:  # fmt: skip
    """(the best stratified ``folds``-fold accuracy over the ridge ``strengths``, the folds used)
    of a ridge classifier on standardised features: least squares onto the one-hot labels, with
    an intercept, predicting the largest output. A strength is relative to the mean eigenvalue
    of the fold's centred Gram matrix. None where a class has fewer than 2 examples.

    The grid is searched on the same folds it is reported on (slightly optimistic, the same for
    every model scored). The Gram matrix of all examples is computed once and each fold's is it
    minus the held-out part; with fewer examples than dimensions the kernel form is used.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    classes, index = np.unique(y, return_inverse=True)
    counts = np.bincount(index)
    folds = int(min(folds, counts.min()))
    if folds < 2 or len(classes) < 2:
        return None
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    targets = np.eye(len(classes))[index]
    fold_of = stratified_folds(index, folds, seed)
    n, d = x.shape
    primal = d <= n - n // folds
    gram = x.T @ x if primal else None
    correct = np.zeros(len(strengths))
    for fold in range(folds):
        held = fold_of == fold
        x_in, t_in, x_out = x[~held], targets[~held], x[held]
        mean_x, mean_t = x_in.mean(0), t_in.mean(0)
        centred = x_in - mean_x
        if primal:
            g = gram - x[held].T @ x[held] - len(x_in) * np.outer(mean_x, mean_x)
            s, v = np.linalg.eigh(g)
            projected = v.T @ (centred.T @ (t_in - mean_t))  # [D, K]
            query = (x_out - mean_x) @ v  # [n_out, D]
        else:  # kernel form: W = Xc^T (Xc Xc^T + lambda)^-1 Tc
            s, u = np.linalg.eigh(centred @ centred.T)
            projected = u.T @ (t_in - mean_t)  # [n_in, K]
            query = ((x_out - mean_x) @ centred.T) @ u  # [n_out, n_in]
        s = np.clip(s, 0.0, None)
        scale = max(float(s.mean()), 1e-12)
        for i, strength in enumerate(strengths):
            outputs = query @ (projected / (s + strength * scale)[:, None]) + mean_t
            correct[i] += (outputs.argmax(1) == index[held]).sum()
    return float(correct.max() / n), folds
