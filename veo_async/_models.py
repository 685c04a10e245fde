"""Request models and the ``Generation`` response (re-exported from their modules).

``_requests`` holds the request models per model family; ``_generation`` the response.
"""

from ._generation import Generation, GenerationErrorInfo, GenerationStatus, Usage, VideoFile
from ._requests import (
    MODEL_REQUESTS,
    AspectRatio,
    CustomVideoRequest,
    Veo2ImageToVideo,
    Veo2TextToVideo,
    Veo3ImageToVideo,
    Veo3TextToVideo,
    Veo31ExtendVideo,
    Veo31FirstLastFrame,
    Veo31ImageToVideo,
    Veo31LiteGenerate001,
    Veo31LitePreview,
    Veo31ReferenceToVideo,
    Veo31TextToVideo,
    VideoRequest,
    build_request,
    coerce_request,
    validation_error_from_pydantic,
)

__all__ = [
    "AspectRatio",
    "CustomVideoRequest",
    "Generation",
    "GenerationErrorInfo",
    "GenerationStatus",
    "MODEL_REQUESTS",
    "Usage",
    "Veo2ImageToVideo",
    "Veo2TextToVideo",
    "Veo3ImageToVideo",
    "Veo3TextToVideo",
    "Veo31ExtendVideo",
    "Veo31FirstLastFrame",
    "Veo31ImageToVideo",
    "Veo31LiteGenerate001",
    "Veo31LitePreview",
    "Veo31ReferenceToVideo",
    "Veo31TextToVideo",
    "VideoFile",
    "VideoRequest",
    "build_request",
    "coerce_request",
    "validation_error_from_pydantic",
]
