"""The shared STFT / log1p path, SSL frame alignment, masker and enhancer invariants."""
import pytest
import torch
from conftest import tiny_config

from speechbrain_sslse import BLSTMMasker, LogSpectrum, SSLEncoder, EnhancementModel, WeightedLayerSum, align_ssl_frames
from speechbrain_sslse.features import num_frames


def test_stft_parameters_match_the_method():
    spec = LogSpectrum()
    x = torch.randn(1, 20480)
    noisy, phase = spec(x)
    assert noisy.shape == (1, 129, 201)
    ref = torch.stft(x, 400, 160, 400, torch.hamming_window(400), center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(noisy[0].T, torch.log1p(ref.abs()[0] + 1e-6), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(phase.abs(), torch.ones_like(phase.abs()), atol=1e-3, rtol=0)


def test_crop_alignment_example_from_the_method():
    enc = SSLEncoder(config=tiny_config(), mode="frozen")
    ssl, lens = enc(torch.randn(1, 20480))
    assert ssl.shape[1] == 63 and num_frames(20480) == 129
    aligned = align_ssl_frames(ssl, lens, 129)
    torch.testing.assert_close(aligned[0, :126:2], ssl[0])
    torch.testing.assert_close(aligned[0, 1:126:2], ssl[0])
    for t in (126, 127, 128):
        torch.testing.assert_close(aligned[0, t], ssl[0, -1])


def test_frame_counts_match_for_every_length_half_to_ten_seconds():
    """SSL frames x2 + last-frame padding reach the STFT count for every length in
    0.5-10 s (odd lengths included): never more SSL frames than STFT frames, never more
    than a few padded ones."""
    enc = SSLEncoder(config=tiny_config(), mode="frozen")
    lengths = torch.arange(8000, 160001)
    ssl = enc.frame_lengths(lengths)
    stft = num_frames(lengths)
    pad = stft - 2 * ssl
    assert int(pad.min()) >= 0 and int(pad.max()) <= 4
    # and the real model agrees with the arithmetic on odd and even lengths
    for n in (8000, 8001, 12345, 20479, 20480, 31999, 160000):
        feats, lens = enc(torch.randn(1, n))
        assert feats.shape[1] == int(lens[0]) == int(enc.frame_lengths(torch.tensor([n]))[0])
        enh = EnhancementModel(enc)
        assert enh(torch.randn(1, n)).enhanced.shape[1] == n // 160 + 1


def test_all_ones_mask_resynthesises_the_input():
    spec = LogSpectrum()
    x = torch.randn(2, 16000 * 3) * 0.1
    noisy, phase = spec(x)
    y = spec.inverse(noisy, phase, torch.tensor([x.shape[1]] * 2))
    snr = 10 * torch.log10(x.pow(2).sum() / (x - y).pow(2).sum())
    assert y.shape == x.shape and snr > 40


@pytest.mark.parametrize("input_kind", ["spectrum", "ssl", "cross"])
def test_batch_with_padding_equals_one_by_one(input_kind):
    enc = None if input_kind == "spectrum" else SSLEncoder(config=tiny_config("hubert"), mode="frozen")
    enh = EnhancementModel(enc, input=input_kind).eval()
    x = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 9760, 5339])  # absolute samples below the Brain-facing forward
    with torch.no_grad():
        batched = enh.enhance(x, lengths)
        with pytest.raises(ValueError, match="absolute"):
            enh.enhance(x, lengths / 16000)
        for i, n in enumerate(lengths.tolist()):
            single = enh.enhance(x[i : i + 1, :n])
            torch.testing.assert_close(batched[i, :n], single[0], atol=1e-5, rtol=1e-4)
            assert torch.count_nonzero(batched[i, n:]) == 0


def test_masker_follows_the_authors_architecture():
    m = BLSTMMasker(969)
    assert m.blstm.num_layers == 2 and m.blstm.bidirectional and m.blstm.hidden_size == 256
    assert m.blstm.dropout == 0
    assert torch.count_nonzero(m.proj.bias) == 0 and torch.count_nonzero(m.out.bias) == 0
    out = m(torch.randn(2, 10, 969))
    assert out.shape == (2, 10, 201) and (out > 0).all() and (out < 1).all()
    # cross mode with WavLM Base (969 inputs, 13 weighted layers): about 2.95 M trainable
    n = sum(p.numel() for p in m.parameters()) + sum(p.numel() for p in WeightedLayerSum(13, 768).parameters())
    assert abs(n - 2.95e6) < 0.01e6


def test_short_input_errors_are_clear():
    with pytest.raises(ValueError, match="shorter than"):
        LogSpectrum()(torch.randn(1, 100))


def test_readme_parameter_table_is_computed():
    import os

    from conftest import ROOT

    from speechbrain_sslse.param_counts import encoder_parameters, table

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    shown = readme.split("<!-- params:start -->")[1].split("<!-- params:end -->")[0].strip()
    assert shown == table()
    assert abs(encoder_parameters("wavlm", {}) - 94.4e6) < 0.05e6
