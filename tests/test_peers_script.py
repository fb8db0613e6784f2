"""benchmarks/peers.py without any peer package: a fake system through --scores (a folder
and a CSV), the Noisy row, n, the combined table; the 48 kHz frame runtimes' delay
handling and length/format of a peer's output, with a stand-in peer."""
import csv
import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_peers():
    spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "benchmarks", "peers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _load_peers()


def _speechlike(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 2  # syllables with pauses
    return (0.1 * envelope * voiced + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def _tiny_set(root):
    clean_dir, noisy_dir, fake_dir = (root / d for d in ("clean", "noisy", "fake"))
    for d in (clean_dir, noisy_dir, fake_dir):
        d.mkdir()
    rng = np.random.default_rng(0)
    for i, uid in enumerate(("a", "b")):
        clean = _speechlike(2.0, i)
        noise = 0.03 * rng.standard_normal(len(clean)).astype(np.float32)
        sf.write(clean_dir / f"{uid}.wav", clean, 16000)
        sf.write(noisy_dir / f"{uid}.wav", clean + noise, 16000)
        sf.write(fake_dir / f"{uid}.wav", clean + 0.2 * noise, 16000, subtype="FLOAT")
    return clean_dir, noisy_dir, fake_dir


def _two_row_csv(path):
    """A system scored elsewhere, on ids a and b, without pair digests."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pesq", "csig", "cbak", "covl", "stoi", "ssnr", "error"])
        w.writerows([["a", 2.0, 3.0, 2.5, 2.4, 0.9, 5.0, ""], ["b", 2.2, 3.1, 2.6, 2.5, 0.8, 6.0, ""]])
    return path


def test_fake_system_and_noisy_are_scored_with_n(tmp_path):
    clean, noisy, fake = _tiny_set(tmp_path)
    csv_path = tmp_path / "scores_other.csv"
    with open(csv_path, "w", newline="") as f:  # a system scored elsewhere, one row missing
        w = csv.writer(f)
        w.writerow(["id", "pesq", "csig", "cbak", "covl", "stoi", "ssnr", "error"])
        w.writerow(["a", 2.0, 3.0, 2.5, 2.4, 0.9, 5.0, ""])
    out = tmp_path / "out"
    record = peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                         "--scores", f"other:tiny={csv_path}", "--note", "fake:tiny=a note",
                         "--about", "tiny=Two made-up pairs.", "--out", str(out), "--workers", "1"])
    systems = json.load(open(out / "tiny" / "summary.json"))["systems"]
    assert list(systems) == ["Noisy", "fake (a note)", "other"]
    for name in ("Noisy", "fake (a note)"):
        assert systems[name]["n"] == 2 and all(systems[name][m]["n"] == 2 for m in peers.metrics.METRICS)
    assert systems["fake (a note)"]["pesq"]["mean"] > systems["Noisy"]["pesq"]["mean"]
    assert systems["other"]["n"] == 2  # the missing row counts (floored), it is not dropped
    table = open(out / "peers.md").read()
    assert "Two made-up pairs." in table.split("## tiny (2 pairs)")[1].split("| system |")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| system |") and "| n |" in rows[0] and "PESQ" in rows[0]
    n_col = [c.strip() for c in rows[0].split("|")].index("n")
    for name in ("Noisy", "fake (a note)"):
        row = next(r for r in rows if r.startswith(f"| {name} |"))
        assert [c.strip() for c in row.split("|")][n_col] == "2"
    assert record["sets"]["tiny"]["n_pairs"] == 2 and (out / "peers.json").exists()
    assert json.load(open(out / "peers.json"))["sets"]["tiny"]["systems"]["Noisy"]["n"] == 2
    assert not (out / "tiny" / "fake").exists()  # no audio kept without --keep-audio


class _Delay(peers._FrameRuntime):
    """Stand-in for a 48 kHz C runtime: a pure delay of ``delay`` samples, frame by frame."""

    name, label = "delay", "Delay"

    def __init__(self, frame=480, delay=1440):
        self.frame, self.delay = frame, delay

    def new_state(self):
        return {"buf": np.zeros(self.delay, dtype=np.float32)}

    def free_state(self, state):
        state["buf"] = None

    def process_frame(self, state, frame):
        buf = np.concatenate([state["buf"], frame])
        state["buf"] = buf[len(frame):]
        return buf[:len(frame)]


def test_frame_runtime_removes_its_delay_and_keeps_the_length():
    x = np.random.default_rng(1).standard_normal(48000 + 123).astype(np.float32)
    y = _Delay().process(x)
    assert y.shape == x.shape and np.array_equal(y, x)


def test_peer_output_has_the_input_length_rate_and_float_wav(tmp_path):
    x = _speechlike(1.0, 3)[:15999]  # odd length: the 16 -> 48 -> 16 kHz round trip must not change it
    sf.write(tmp_path / "in.wav", x, 16000)
    peers.peer_enhance_file(_Delay(), str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    info = sf.info(tmp_path / "out.wav")
    assert (info.frames, info.samplerate, info.subtype) == (len(x), 16000, "FLOAT")
    y, _ = sf.read(tmp_path / "out.wav")
    assert np.corrcoef(x[100:-100], y[100:-100])[0, 1] > 0.99  # aligned, not shifted


def test_a_failing_peer_is_reported_per_file_not_fatal(tmp_path):
    clean, noisy, _ = _tiny_set(tmp_path)
    (noisy / "b.wav").write_text("not audio")
    items = peers.evaluation.match_folders(str(noisy), str(clean))[0]
    jobs, failed, _ = peers.enhance_all(items, lambda n, t: peers.peer_enhance_file(_Delay(), n, t),
                                        str(tmp_path / "enh"), "delay")
    assert [j[0] for j in jobs] == ["a"] and [r["id"] for r in failed] == ["b"]
    assert "enhancement failed" in failed[0]["error"]


def test_scores_from_a_csv_keep_si_sdr_where_the_file_has_it(tmp_path):
    """A system scored elsewhere with an si_sdr column stays in the SI-SDR table; a file
    without it shows "—" there and leaves the column to the systems that have it."""
    clean, noisy, fake = _tiny_set(tmp_path)
    with_sdr, without = tmp_path / "scores_with.csv", tmp_path / "scores_without.csv"
    for path, extra in ((with_sdr, ["si_sdr"]), (without, [])):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "pesq", "csig", "cbak", "covl", "stoi", "ssnr", *extra, "error"])
            w.writerow(["a", 2.0, 3.0, 2.5, 2.4, 0.9, 5.0, *(["7.5"] if extra else []), ""])
            w.writerow(["b", 2.2, 3.1, 2.6, 2.5, 0.8, 6.0, *(["nan"] if extra else []), ""])
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                "--scores", f"other:tiny={with_sdr}", "--out", str(tmp_path / "one"), "--workers", "1"])
    systems = json.load(open(tmp_path / "one" / "tiny" / "summary.json"))["systems"]
    floor = peers.evaluation.ALL_FLOORS["si_sdr"]
    assert systems["other"]["si_sdr"]["mean"] == pytest.approx((7.5 + floor) / 2)  # nan -> floor
    assert "SI-SDR" in open(tmp_path / "one" / "peers.md").read()
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                "--scores", f"other:tiny={without}", "--out", str(tmp_path / "two"), "--workers", "1"])
    table = open(tmp_path / "two" / "peers.md").read()
    sdr_rows = table.split("| system | SI-SDR |")[1].strip().splitlines()[1:4]
    assert [r.split("|")[1].strip() for r in sdr_rows] == ["Noisy", "fake", "other"]
    assert sdr_rows[2].split("|")[2].strip() == peers.evaluation.MISSING
    assert all("±" in r for r in sdr_rows[:2])  # the systems scored here keep their values
    systems = json.load(open(tmp_path / "two" / "tiny" / "summary.json"))["systems"]
    assert "si_sdr" not in systems["other"] and "si_sdr" in systems["fake"]


def test_dnsmos_columns_for_every_system_scored_here(tmp_path):
    """--dnsmos: Noisy, a folder system and a failed file get DNSMOS (the failure at its
    floor); a CSV system without DNSMOS shows "—" and keeps its paper metrics."""
    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    clean, noisy, fake = _tiny_set(tmp_path)
    os.remove(fake / "b.wav")  # no output for one file: floored, not dropped
    csv_path = _two_row_csv(tmp_path / "scores_other.csv")
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                "--scores", f"other:tiny={csv_path}", "--dnsmos", "--out", str(tmp_path / "out"), "--workers", "1"])
    systems = json.load(open(tmp_path / "out" / "tiny" / "summary.json"))["systems"]
    floor = peers.evaluation.ALL_FLOORS["dnsmos_ovrl"]
    assert systems["Noisy"]["dnsmos_ovrl"]["mean"] > floor
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "out" / "tiny" / "scores_fake.csv"))}
    assert float(rows["b"]["dnsmos_bak"]) == peers.evaluation.ALL_FLOORS["dnsmos_bak"]
    assert float(rows["a"]["dnsmos_bak"]) > peers.evaluation.ALL_FLOORS["dnsmos_bak"]
    assert "dnsmos_sig" not in systems["other"] and systems["other"]["pesq"]["n"] == 2
    table = open(tmp_path / "out" / "peers.md").read()
    assert "DNSMOS BAK" in table
    other = [r for r in table.split("DNSMOS BAK")[1].splitlines() if r.startswith("| other |")][0]
    assert peers.evaluation.MISSING in other


def test_scores_from_other_audio_are_refused_and_unverified_ones_are_listed(tmp_path):
    """A CSV written by an earlier run carries pair digests: accepted on the same audio,
    refused once the set is re-rendered with the same names but other samples; a CSV
    without digests is used and listed as not checked."""
    clean, noisy, fake = _tiny_set(tmp_path)
    first = tmp_path / "first"
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                "--out", str(first), "--workers", "1"])
    earlier = first / "tiny" / "scores_fake.csv"
    assert all(r["pair"] for r in csv.DictReader(open(earlier)))
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"again:tiny={earlier}",
                "--out", str(tmp_path / "same"), "--workers", "1"])
    assert "not checked" not in open(tmp_path / "same" / "peers.md").read()
    wav, rate = sf.read(noisy / "b.wav", dtype="float32")
    wav[100] += 1e-3  # the "re-render": same names, slightly other samples
    sf.write(noisy / "b.wav", wav, rate)
    with pytest.raises(SystemExit, match="1 of 2 rows .* other audio"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"again:tiny={earlier}",
                    "--out", str(tmp_path / "other"), "--workers", "1"])
    assert not (tmp_path / "other").exists()  # refused before any enhancing or scoring
    plain = _two_row_csv(tmp_path / "scores_plain.csv")
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"plain:tiny={plain}",
                "--out", str(tmp_path / "plain"), "--workers", "1"])
    assert "plain on tiny: per-utterance scores from" in open(tmp_path / "plain" / "peers.md").read()
    assert "not checked to be the same audio" in open(tmp_path / "plain" / "peers.md").read()


def test_a_scores_csv_with_two_rows_of_one_utterance_is_refused(tmp_path):
    path = tmp_path / "scores_x.csv"
    path.write_text("id,pesq,floored,error\na,2.0,,\na,3.0,,\nb,2.5,,reference: unreadable\n")
    with pytest.raises(SystemExit, match="'a' has two rows"):
        peers.read_scores_csv(str(path), ["a", "b"])
    path.write_text("id,pesq,floored,error\na,2.0,,\nb,2.5,,reference: unreadable\n")
    rows, missing = peers.read_scores_csv(str(path), ["a", "b"])
    assert not missing and not rows[1]["error"].startswith("reference:")  # cannot drop b for everyone


def test_a_name_given_twice_is_refused_not_dropped(tmp_path):
    """Two --scores (or --set, --model, --note) with one name: a dict would keep only the
    last, and the first system would be missing from the tables without a word."""
    clean, noisy, fake = _tiny_set(tmp_path)
    plain = _two_row_csv(tmp_path / "scores_plain.csv")
    with pytest.raises(SystemExit, match="given twice"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"mine:tiny={fake}",
                    "--scores", f"mine:tiny={plain}", "--out", str(tmp_path / "out"), "--workers", "1"])
    with pytest.raises(SystemExit, match="given twice"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--set", f"tiny={noisy}:{clean}", "--peers",
                    "--out", str(tmp_path / "out"), "--workers", "1"])
    assert not (tmp_path / "out").exists()


def test_timing_names_the_device_the_models_ran_on(tmp_path, monkeypatch):
    """--device cuda runs the --model systems on the GPU: peers.md may not call their
    enhancement time CPU time (a GPU's real-time factor beside the peers' CPU ones)."""
    import shutil

    import speechbrain_sslse.inference

    class Copy:  # stand-in model: its output is its input
        mods = type("Mods", (), {"enhancer": type("Enhancer", (), {"weights_digest": lambda self: "d1g35t"})()})()

        def enhance_file(self, noisy, target):
            shutil.copyfile(noisy, target)

    monkeypatch.setattr(speechbrain_sslse.inference, "load_model", lambda path, device="cpu": Copy())
    clean, noisy, _ = _tiny_set(tmp_path)
    out = tmp_path / "out"
    record = peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--model", "mine=somewhere",
                         "--device", "cuda:0", "--out", str(out), "--workers", "1"])
    assert record["device"] == "cuda:0"
    text = open(out / "peers.md").read()
    assert "Enhancement time on CPU:" not in text and "cuda:0 (--model systems)" in text
    # which weights the row measured, for export.py's check
    assert json.load(open(out / "tiny" / "summary.json"))["weights"] == {"mine": "d1g35t"}


def test_names_that_share_a_file_name_are_refused_before_any_work(tmp_path):
    """"a b" and "a_b" both write scores_a_b.csv: write_results refused that only after
    every system was enhanced and scored (a traceback, no tables); now before the work."""
    clean, noisy, fake = _tiny_set(tmp_path)
    plain = _two_row_csv(tmp_path / "scores_plain.csv")
    with pytest.raises(SystemExit, match="'a b' and 'a_b' would share scores_a_b.csv"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"a b:tiny={fake}",
                    "--scores", f"a_b:tiny={plain}", "--out", str(tmp_path / "out"), "--workers", "1"])
    assert not (tmp_path / "out").exists()
    # a note tells them apart in the tables
    peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"a b:tiny={fake}",
                "--scores", f"a_b:tiny={plain}", "--note", "a_b:tiny=scored elsewhere",
                "--out", str(tmp_path / "out"), "--workers", "1"])
    assert (tmp_path / "out" / "tiny" / "scores_a_b.csv").exists()


def test_a_note_for_no_system_is_refused(tmp_path):
    """A note is a caveat on a row ("noise seen in training"): a mistyped system name in
    --note dropped it without a word."""
    clean, noisy, fake = _tiny_set(tmp_path)
    with pytest.raises(SystemExit, match="--note fak:tiny: no system of that name"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                    "--note", "fak:tiny=noise seen in training", "--out", str(tmp_path / "out"), "--workers", "1"])
    assert not (tmp_path / "out").exists()


def test_a_set_folder_holding_another_tools_summary_is_refused_before_any_work(tmp_path):
    """<out>/<set>/summary.json of an analysis (or a user's file): write_results refused it only
    after every system was enhanced and scored, with a traceback; now before the work."""
    clean, noisy, fake = _tiny_set(tmp_path)
    (tmp_path / "out" / "tiny").mkdir(parents=True)
    record = tmp_path / "out" / "tiny" / "summary.json"
    record.write_text(json.dumps({"pairs": 2, "sources": {"wavlm": None}}))
    with pytest.raises(SystemExit, match="not written by an evaluation"):
        peers.main(["--set", f"tiny={clean}:{noisy}", "--peers", "--scores", f"fake:tiny={fake}",
                    "--out", str(tmp_path / "out"), "--workers", "1"])
    assert json.loads(record.read_text()) == {"pairs": 2, "sources": {"wavlm": None}}
    assert sorted(os.listdir(tmp_path / "out")) == ["tiny"]
