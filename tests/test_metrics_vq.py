"""VQ-VAE metrics of mm-listener section 7: reconstruction, commitment, perplexity."""

from __future__ import annotations

import numpy as np
import pytest

from ehead_cli.metrics import vq


def test_vq_metrics_hand_computed():
    target = np.zeros((2, 2))
    recon = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert vq.reconstruction_error(recon, target) == pytest.approx(2.5)  # (5 + 0) / 2
    assert vq.reconstruction_error(recon, target, kind="mse") == pytest.approx(25 / 4)
    assert vq.commitment(np.array([1.0, 2.0]), np.zeros(2)) == pytest.approx(2.5)
    assert vq.perplexity(np.arange(8), 8) == pytest.approx(8.0)  # uniform use of the codebook
    assert vq.perplexity(np.full(10, 3), 8) == pytest.approx(1.0)
    assert vq.perplexity(np.array([0, 0, 5, 5]), 8) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="token ids"):
        vq.perplexity(np.array([9]), 8)
