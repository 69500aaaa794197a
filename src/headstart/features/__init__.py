"""Standalone feature extraction: a layer's output for every image, streamed to a resumable store."""
from ._extract import ExtractConfig as ExtractConfig
from ._extract import ExtractStats as ExtractStats
from ._extract import extract as extract
from ._model import POOLING_MODES as POOLING_MODES
from ._model import FeatureModel as FeatureModel
from ._store import FeatureSet as FeatureSet
from ._store import IncompleteStoreError as IncompleteStoreError

__all__ = ["ExtractConfig", "ExtractStats", "extract", "FeatureModel", "FeatureSet", "IncompleteStoreError",
           "POOLING_MODES"]
