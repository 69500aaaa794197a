"""The model zoo: names → timm architectures with their weights, Keras' switches, layers and summary."""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "create_model": "._factory:create_model", "imagenet_labels": "._factory:imagenet_labels",
    "default_input_size": "._factory:default_input_size",
    "HeadstartModel": "._model:HeadstartModel", "ModelConfig": "._model:ModelConfig",
    "Prediction": "._prediction:Prediction", "FromCut": "._model:FromCut",
    "Probabilities": "._model:Probabilities", "unknown_layer": "._model:unknown_layer", "Layer": "._layers:Layer", "stage_paths": "._layers:stage_paths",
    "parse_head": "._heads:parse_head", "signed_sqrt": "._heads:signed_sqrt",
    "SignedSqrt": "._heads:SignedSqrt",
    "ModelSpec": "._registry:ModelSpec", "get_spec": "._registry:get_spec", "resolve_alias": "._registry:resolve_alias", "list_models": "._registry:list_models",
    "register_model": "._registry:register_model", "weights_available": "._registry:weights_available",
})

__all__ = ["create_model", "imagenet_labels", "default_input_size", "HeadstartModel", "ModelConfig", "Prediction", "FromCut", "Probabilities", "unknown_layer", "Layer", "stage_paths",
           "parse_head", "signed_sqrt", "SignedSqrt", "ModelSpec", "get_spec", "resolve_alias", "list_models", "register_model", "weights_available"]
