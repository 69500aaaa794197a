"""scikit-learn door: a transformer from image paths to features, so a linear probe is just a Pipeline.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> clf = make_pipeline(FeatureExtractor("lite0"), LogisticRegression())   # doctest: +SKIP
>>> clf.fit(train_paths, train_labels).predict(test_paths)                 # doctest: +SKIP

With views (:mod:`headstart.views`: trained on every flip/rotation, probabilities averaged over them — the same
numpy functions ``headstart train``, ``predict`` and the ONNX path use):

>>> clf = ViewsClassifier(FeatureExtractor("lite0"), LogisticRegression(), views="dihedral")  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .data import load_image
from .features import ExtractConfig, feature_model_for
from .views import apply_views, average_views, view_ops

__all__ = ["FeatureExtractor", "ViewsClassifier"]


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
        return self.transform_views(X, "none")[0]

    def transform_views(self, X, views: str) -> np.ndarray:
        """V×N×features: the features of every view (:func:`headstart.views.apply_views`) of every image."""
        check_is_fitted(self, "model_")
        transform = self.model_.preprocessing.array_transform()
        n_views = len(view_ops(views))
        out = np.empty((n_views, len(X), self.n_features_out_), np.float32)
        for start in range(0, len(X), self.batch_size):
            batch = np.stack([transform(load_image(x)) for x in X[start:start + self.batch_size]])
            with torch.inference_mode():
                f = self.model_(torch.from_numpy(apply_views(batch, views))).reshape(n_views, len(batch), -1)
            out[:, start:start + len(batch)] = f.numpy()
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


class ViewsClassifier(ClassifierMixin, BaseEstimator):
    """``estimator`` trained on the features of every view of every image; ``predict_proba`` averages its
    probabilities over the views of each image (:func:`headstart.views.average_views`).

    ``extractor``: a :class:`FeatureExtractor`; ``views``: none, hflip or dihedral.
    """

    def __init__(self, extractor: FeatureExtractor, estimator, views: str = "hflip"):
        self.extractor = extractor
        self.estimator = estimator
        self.views = views

    def fit(self, X, y):
        self.extractor_ = clone(self.extractor).fit(X)
        f = self.extractor_.transform_views(X, self.views)
        self.estimator_ = clone(self.estimator).fit(f.reshape(-1, f.shape[2]), np.tile(np.asarray(y), len(f)))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        f = self.extractor_.transform_views(X, self.views)
        return average_views(self.estimator_.predict_proba(f.reshape(-1, f.shape[2])), len(f))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
