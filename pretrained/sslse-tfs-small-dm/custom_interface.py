"""Entry point of a speechbrain-sslse model folder for SpeechBrain's ``foreign_class``.

A copy of this file is written into every exported model folder, so the folder loads the way
SpeechBrain loads models whose code lives outside SpeechBrain:

    from speechbrain.inference.interfaces import foreign_class

    enhancer = foreign_class(source="<model folder or Hub id>", pymodule_file="custom_interface.py",
                             classname="EnhanceSSL")
    enhancer.enhance_file("noisy.wav", "enhanced.wav")

The model code is the ``speechbrain-sslse`` package (it must be installed); this file only
names its interface, so ``foreign_class`` and ``EnhanceSSL.from_hparams`` run the same code.
"""
from speechbrain_sslse.inference import EnhanceSSL

__all__ = ["EnhanceSSL"]
