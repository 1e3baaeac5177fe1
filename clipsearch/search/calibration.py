"""A calibrated score for image-text pairs: how much better a text fits an image than generic prompts do.

Raw cosines don't transfer between queries: one text sits at 0.22 for its best match, another at 0.31.
So each pair is compared with the same image's fit to a fixed background of generic prompts
("a photo.", "an image.", ...), with the model's own softmax temperature s:

    calibrated(x, t) = sigmoid(s * cos(x, t) - log(mean_b exp(s * cos(x, b))))

which is the probability of `t` in a two-way softmax against the (log-mean-exp) background. 0.5 means
"describes this image no better than 'a photo' does"; a threshold such as 0.9 keeps a similar meaning
across queries. It only makes sense across modalities (text query -> images, image -> texts).
"""

from __future__ import annotations

import numpy as np

from clipsearch.config import BACKGROUND_PROMPTS
from clipsearch.errors import InputError
from clipsearch.models.encoder import Encoder


class Calibrator:
    """Background prompt vectors (B, D) and the model's logit scale; scores image-text cosines."""

    def __init__(self, encoder: Encoder, prompts: tuple[str, ...] | list[str] = BACKGROUND_PROMPTS):
        if not prompts:
            raise InputError("the calibration background needs at least one prompt")
        self.prompts = tuple(prompts)
        self.background = encoder.encode_texts(list(self.prompts))
        self.scale = encoder.logit_scale

    def __call__(self, cos: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """cos (N,) of image-text pairs, xb (N, D) or (D,) their images' unit vectors -> (N,) in (0, 1)."""
        cos = np.asarray(cos, np.float64)
        xb = np.broadcast_to(np.asarray(xb, np.float64), (len(cos), self.background.shape[1]))
        logits = self.scale * (xb @ self.background.T.astype(np.float64))  # (N, B)
        top = logits.max(axis=1)
        background = top + np.log(np.exp(logits - top[:, None]).mean(axis=1))
        return 1.0 / (1.0 + np.exp(-(self.scale * cos - background)))
