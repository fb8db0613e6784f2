"""speechbrain-sslse: self-supervised speech embeddings for speech enhancement.

Hung et al., "Boosting Self-Supervised Embeddings for Speech Enhancement", Interspeech 2022.
"""
import logging as _logging

# SpeechBrain warns, whenever it is imported, that torchvision (used only to save image
# logs, which this package never does) is missing; that notice is not our users' concern.
_logging.getLogger("speechbrain.utils.train_logger").addFilter(lambda record: "torchvision" not in record.getMessage())

from .model import EnhancementModel  # noqa: E402
from .features import LogSpectrum, align_ssl_frames
from .head import BLSTMMasker
from .lobes import SSLEncoder, WeightedLayerSum
from .ssl_loader import load_ssl_model
from .inference import EnhanceSSL  # the user-facing enhancer (SpeechBrain Pretrained interface)

__version__ = "0.1.0"
__all__ = ["EnhanceSSL", "EnhancementModel", "SSLEncoder", "WeightedLayerSum", "BLSTMMasker", "LogSpectrum", "align_ssl_frames", "load_ssl_model"]
