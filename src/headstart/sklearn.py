"""scikit-learn door: a transformer from image paths to features, so a linear probe is just a Pipeline.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> clf = make_pipeline(FeatureExtractor("lite0"), LogisticRegression())   # doctest: +SKIP
>>> clf.fit(train_paths, train_labels).predict(test_paths)                 # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .data import load_image
from .features import ExtractConfig, feature_model_for

__all__ = ["FeatureExtractor"]


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Image paths (or PIL images / arrays) → an (n_samples, n_features) float32 array.

    Parameters mirror ``headstart extract``: ``model``, ``layer`` (None: pooled pre-classifier vector),
    ``pooling`` (avg, max, avgmax; maps are flattened), ``weights`` and ``batch_size``. ``fit`` only builds the
    network (it learns nothing); an unreadable image raises :class:`headstart.ImageLoadError` naming the file.
    """

    def __init__(self, model: str = "lite0", *, layer: str | None = None, pooling: str = "avg",
                 weights: str | None = "imagenet", batch_size: int = 32):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.weights = weights
        self.batch_size = batch_size

    def fit(self, X, y=None):
        self.model_ = feature_model_for(ExtractConfig(model=self.model, layer=self.layer, pooling=self.pooling,
                                                      weights=self.weights))
        self.n_features_out_ = int(np.prod(self.model_.feature_shape))
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        transform = self.model_.preprocessing.transform()
        out = np.empty((len(X), self.n_features_out_), np.float32)
        for start in range(0, len(X), self.batch_size):
            batch = torch.stack([transform(load_image(x)) for x in X[start:start + self.batch_size]])
            out[start:start + len(batch)] = self.model_(batch).reshape(len(batch), -1).numpy()
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.array([f"feature{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags
