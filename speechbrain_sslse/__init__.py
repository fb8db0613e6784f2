"""speechbrain-sslse: self-supervised speech embeddings for speech enhancement.

Hung et al., "Boosting Self-Supervised Embeddings for Speech Enhancement", Interspeech 2022.
"""
from .enhancer import SSLEnhancer
from .features import LogSpectrum, align_ssl_frames
from .head import BLSTMMasker
from .lobes import SSLEncoder, WeightedLayerSum
from .ssl_loader import load_ssl_model

__version__ = "0.1.0"
__all__ = ["SSLEnhancer", "SSLEncoder", "WeightedLayerSum", "BLSTMMasker", "LogSpectrum", "align_ssl_frames", "load_ssl_model"]
