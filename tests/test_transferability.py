"""Transferability scores (hftl.transferability) against small cases computed independently."""

import math

import numpy as np
import pytest

from hftl.transferability import leep, logme, logme_evidence, nce


def gaussian_evidence(features, target, alpha, beta):
    """log N(y | 0, I / beta + F F^T / alpha): the evidence of Bayesian linear regression, by the
    dense covariance (no eigendecomposition, no fixed point)."""
    n = len(target)
    covariance = np.eye(n) / beta + features @ features.T / alpha
    _, logdet = np.linalg.slogdet(covariance)
    return -0.5 * (
        logdet + target @ np.linalg.solve(covariance, target) + n * math.log(2 * math.pi)
    )


@pytest.mark.parametrize("n, d", [(40, 6), (12, 30)])  # more examples than dimensions, and fewer
def test_logme_is_the_maximised_gaussian_evidence_per_example(n, d):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, d)) + labels[:, None] * rng.normal(size=d)
    evidence, alpha, beta = logme_evidence(features, labels)
    for k in range(3):
        target = (labels == k).astype(float)
        best = gaussian_evidence(features, target, alpha[k], beta[k])
        assert evidence[k] * n == pytest.approx(best, rel=1e-6)
        # alpha, beta maximise it: moving either does not raise the evidence (where the best
        # alpha or beta runs off to infinity, as with fewer examples than dimensions, the evidence
        # is flat there and the fixed point stops within a relative 1e-6 of it)
        for a, b in ((1.2, 1), (0.8, 1), (1, 1.2), (1, 0.8)):
            moved = gaussian_evidence(features, target, alpha[k] * a, beta[k] * b)
            assert moved <= best + 1e-6 * abs(best)
    assert logme(features, labels) == pytest.approx(evidence.mean())


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    noise = rng.normal(size=(300, 16))
    informative = noise.copy()
    informative[:, :4] += 3 * np.eye(4)[labels]
    assert logme(informative, labels) > logme(noise, labels) + 0.1


def test_leep_and_nce_by_their_definitions():
    theta = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([1, 0, 1, 0])
    # LEEP: P(y, z) = mean over examples of [y_i = y] theta_iz; P(y | z) = P(y, z) / P(z)
    joint = {(y, z): sum(theta[i, z] for i in range(4) if labels[i] == y) / 4
             for y in (0, 1) for z in range(3)}  # fmt: skip
    marginal = {z: joint[0, z] + joint[1, z] for z in range(3)}
    expected = np.mean([
        math.log(sum(joint[labels[i], z] / marginal[z] * theta[i, z] for z in range(3)))
        for i in range(4)
    ])  # fmt: skip
    assert leep(theta, labels) == pytest.approx(expected)
    # NCE: source top classes z = 0, 1, 0, 2; pairs (y, z) = (1,0), (0,1), (1,0), (0,2)
    # H(Y | Z) = 0 (each z has one y), so NCE = 0; swap one label to make z = 0 ambiguous
    assert nce(theta, labels) == pytest.approx(0.0)
    mixed = np.array([1, 0, 0, 0])  # z = 0 now holds y = 1 and y = 0, half each
    assert nce(theta, mixed) == pytest.approx(2 / 4 * math.log(0.5))


def test_mismatched_shapes_are_refused():
    with pytest.raises(
        ValueError, match=r"logme: features \(3, 2\) and labels \(4,\) do not match"
    ):
        logme(np.zeros((3, 2)), np.zeros(4, dtype=int))
