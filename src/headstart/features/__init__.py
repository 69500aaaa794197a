"""Standalone feature extraction: a layer's output for every image, streamed to a resumable store."""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "ExtractConfig": "._config:ExtractConfig", "POOLING_MODES": "._config:POOLING_MODES", "DTYPES": "._config:DTYPES",
    "ExtractStats": "._extract:ExtractStats", "extract": "._extract:extract",
    "cached_features": "._extract:cached_features",
    "feature_network": "._extract:feature_network", "feature_identity": "._extract:feature_identity",
    "FeatureModel": "._model:FeatureModel", "feature_model_for": "._model:feature_model_for",
    "merge": "._shard:merge", "FeatureSet": "._store:FeatureSet", "IncompleteStoreError": "._store:IncompleteStoreError",
})

__all__ = ["ExtractConfig", "ExtractStats", "extract", "cached_features", "feature_network", "feature_identity",
           "merge", "FeatureModel", "feature_model_for", "FeatureSet",
           "IncompleteStoreError", "POOLING_MODES", "DTYPES"]
