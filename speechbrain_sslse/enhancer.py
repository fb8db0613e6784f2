"""Compatibility: model folders exported before the rename name
``speechbrain_sslse.enhancer.SSLEnhancer`` in their ``hyperparams.yaml``; the class is now
``speechbrain_sslse.model.EnhancementModel`` (the nn.Module; ``EnhanceSSL`` is the
inference interface)."""
from .model import EnhancementModel as SSLEnhancer  # noqa: F401
