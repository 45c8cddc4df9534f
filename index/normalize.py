"""Unit-length rows: every encoder's last step, so cosine similarity is a dot product."""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (in float32: reduced-precision models normalise in their
    own precision, so it is redone here)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
