"""arc-eval end to end on real WAV files: the audio metric set (OpenL3 through its official loader and a weight
file in the official layout; tiny random PaSST and CLAP; the real hub-cache tokenizer path) against an
independent recomputation, missing / corrupt / unlisted files counted, resume and the reference cache; the probes
set generating from a real tones checkpoint; user errors through the console script."""

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from arc.config import compose_config
from arc.files import sha256_file
from arc.metrics import embed
from arc.metrics.evaluate import load_arrays, read_prompts, run
from arc.metrics.openl3 import load_openl3
from arc.metrics.probes import ATTRIBUTES
from arc.metrics.statistics import (
    ccds,
    clap_score,
    embedding_statistics,
    frechet_distance,
    matched_kl,
    recall_coverage,
)
from tests import tiny_metrics
from tests.official_layouts import write_keras_h5

RATE = 44100
CAPTIONS = {"p0": "a dog barks", "p1": "rain on a tin roof", "p2": "a car passes by", "p3": "birds sing"}


def _clip(seed: int, seconds: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
    return (0.3 * tone[:, None] + 0.05 * rng.normal(size=(t.size, 2))).astype(np.float32)


@pytest.fixture
def eval_dirs(tmp_path, monkeypatch):
    """prompts p0..p3 with 2 renderings; the system lacks p3 (both renderings), p2's first file is corrupt, and
    one file no prompt names; a reference of 6 files (ids p0..p3, r4, r5); the metric weight cache with OpenL3's
    file; a hub cache with the CLAP tokenizer under ``roberta-base``."""
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": i, "caption": c}) + "\n" for i, c in CAPTIONS.items())
    )
    gen = tmp_path / "gen"
    (gen / "rendering1").mkdir(parents=True)
    for n, prompt_id in enumerate(["p0", "p1", "p2"]):
        sf.write(gen / f"{prompt_id}.wav", _clip(n), RATE)
        sf.write(gen / "rendering1" / f"{prompt_id}.wav", _clip(10 + n), RATE)
    (gen / "p2.wav").write_bytes(b"RIFF\x00\x00not a wav")
    sf.write(gen / "stray.wav", _clip(99), RATE)
    ref = tmp_path / "ref"
    ref.mkdir()
    for n, ref_id in enumerate(["p0", "p1", "p2", "p3", "r4", "r5"]):
        sf.write(ref / f"{ref_id}.wav", _clip(20 + n), RATE)
    cache = tmp_path / "weights"
    cache.mkdir()
    write_keras_h5(cache / "openl3_audio_mel256_env.h5")  # the official file name (arc.metrics.weights)
    tiny_metrics.write_hub_tokenizer(tmp_path / "hub")
    monkeypatch.setenv("ARC_METRICS_CACHE", str(cache))
    return tmp_path


def _tokenizer_dir(root: Path) -> Path:
    """The tokenizer's snapshot directory (a local directory: the hub cache path is read when huggingface_hub is
    imported, so in-process tests name the directory; the console-script test below goes through the cache)."""
    return next((root / "hub" / "models--roberta-base" / "snapshots").iterdir())


def _audio_config(root: Path, out: str = "out", *extra: str):
    return compose_config(
        "eval",
        [f"prompts={root / 'prompts.jsonl'}", "renderings=2", f"reference.audio={root / 'ref'}",
         f"reference.cache_dir={root / 'refcache'}", f"+systems.gen.audio={root / 'gen'}",
         f"paths.output_dir={root / out}", "metrics.passt._target_=tests.tiny_metrics.passt",
         "metrics.clap._target_=tests.tiny_metrics.clap", f"metrics.clap_tokenizer.name={_tokenizer_dir(root)}",
         "metrics.recall_k=1", "+trainer.enable_progress_bar=false",
         *extra],
    )  # fmt: skip


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0].T


def _features(root: Path, audio: Path) -> dict[str, np.ndarray]:
    """arc-eval's feature file of ``audio`` (content-addressed by the file's SHA-256)."""
    (path,) = [p for p in root.rglob(f"{sha256_file(audio)}.npz")]
    return load_arrays(path)


@torch.no_grad()
def _independent(root: Path) -> dict:
    """Check arc-eval's feature files against the arc.metrics functions called directly on the files that should
    count, then compute the set's numbers from those features with the statistics functions."""
    from arc.metrics.clap import clap_feature_extractor, clap_text_embeddings, clap_tokenizer

    openl3, passt, clap, extractor = (
        load_openl3("env"),
        tiny_metrics.passt(),
        tiny_metrics.clap(),
        clap_feature_extractor(),
    )
    gen, ref = root / "gen", root / "ref"
    generated = {(i, k): gen / sub / f"{i}.wav" for i in ("p0", "p1", "p2") for k, sub in ((0, ""), (1, "rendering1"))}
    del generated["p2", 0]  # corrupt
    got = {key: _features(root / "out" / "features", path) for key, path in generated.items()}
    refs = {p.stem: _features(root / "refcache" / "features", p) for p in sorted(ref.glob("*.wav"))}
    assert set(refs["r4"]) == {"openl3", "passt_probabilities", "passt_embedding"}  # no CLAP for references
    for (i, k), path in generated.items():
        audio = _read(path)
        direct = {"openl3": embed.openl3_embeddings(openl3, audio, RATE),
                  "passt_probabilities": embed.passt_clip_outputs(passt, audio, RATE)[0],
                  "clap": embed.clap_clip_embedding(clap, extractor, audio, RATE)}  # fmt: skip
        for name, value in direct.items():
            # float32 rounding (MKL's results depend on memory alignment), amplified by random weights
            assert np.abs(got[i, k][name] - value).max() <= 1e-3 * np.abs(value).max(), (i, k, name)
    first = [got["p0", 0], got["p1", 0]]
    ref_frames = np.concatenate([f["openl3"] for f in refs.values()])
    tokenizer = clap_tokenizer(str(_tokenizer_dir(root)))
    tokens = tokenizer([CAPTIONS["p0"], CAPTIONS["p1"]], padding="max_length", truncation=True, max_length=77,
                       return_tensors="pt")  # fmt: skip
    text = clap_text_embeddings(clap, tokens["input_ids"], tokens["attention_mask"])
    recall, coverage = recall_coverage(
        np.stack([f["passt_embedding"] for f in refs.values()]), np.stack([f["passt_embedding"] for f in first]), k=1
    )
    return {
        "fd_openl3": frechet_distance(
            *embedding_statistics(np.concatenate([f["openl3"] for f in first])), *embedding_statistics(ref_frames)
        ),
        "kl_passt": matched_kl(
            {i: f["passt_probabilities"] for i, f in zip(("p0", "p1"), first, strict=True)},
            {i: f["passt_probabilities"] for i, f in refs.items()},
        ).kl,
        "clap_score": clap_score(np.stack([f["clap"] for f in first]), text),
        "ccds": ccds([np.stack([got[i, 0]["clap"], got[i, 1]["clap"]]) for i in ("p0", "p1")]),
        "recall_passt": recall,
        "coverage_passt": coverage,
    }


def _feature_files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.npz")}


@pytest.mark.slow
def test_arc_eval_audio_metrics_end_to_end(eval_dirs, capsys):
    root = eval_dirs
    results = run(_audio_config(root))
    system = results["systems"]["gen"]
    expected = _independent(root)
    assert set(system["metrics"]) == set(expected) | {"kl_passt_unmatched"}
    for name, value in expected.items():
        assert system["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert system["metrics"]["kl_passt_unmatched"] == 0
    files = system["files"]
    assert files["missing"] == ["p3", "p3 (rendering 1)"] and files["unlisted"] == 1 and files["evaluated"] == 5
    assert list(files["unreadable"]) == [str(root / "gen" / "p2.wav")]
    assert "cannot be decoded" in files["unreadable"][str(root / "gen" / "p2.wav")]
    assert results["reference"]["files"]["evaluated"] == 6
    out = root / "out"
    for name in ("results.json", "results.csv", "results.md", "items.csv"):
        assert (out / name).stat().st_size > 0
    assert (out / "clap_per_prompt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["systems"]["gen"]["metrics"] == system["metrics"]
    assert (out / "results.csv").read_text().splitlines()[1].startswith("gen,")
    items = list(csv.DictReader((out / "items.csv").open()))
    assert [(i["id"], i["rendering"], i["caption"]) for i in items] == [("p0", "0", "a dog barks"),
                                                                        ("p1", "0", "rain on a tin roof")]  # fmt: skip
    printed = capsys.readouterr().out
    assert "| gen |" in printed and "2 missing files" in printed and "1 unreadable" in printed

    # a second run reads every feature file and the reference statistics back: nothing is recomputed
    features = _feature_files(out) | _feature_files(root / "refcache")
    assert len(_feature_files(root / "refcache")) == 6 + 1  # a feature file per reference file, the statistics
    again = run(_audio_config(root))
    assert again["systems"]["gen"]["metrics"] == system["metrics"]
    assert _feature_files(out) | _feature_files(root / "refcache") == features
    assert again["reference"]["statistics"] == results["reference"]["statistics"]

    # a changed reference file changes the key: new statistics, one file's features recomputed
    sf.write(root / "ref" / "r5.wav", _clip(77), RATE)
    changed = run(_audio_config(root))
    assert changed["reference"]["statistics"] != results["reference"]["statistics"]
    assert changed["systems"]["gen"]["metrics"]["fd_openl3"] != pytest.approx(system["metrics"]["fd_openl3"])
    assert len(_feature_files(root / "refcache")) == 7 + 1 + 1  # the new file's features, the new statistics


@pytest.mark.slow
def test_arc_eval_takes_stable_audio_metrics_precomputed_references(eval_dirs, tmp_path):
    root = eval_dirs
    mu, sigma = np.zeros(1024), np.eye(1024)
    np.savez(tmp_path / "ref.npz", mu_ref=mu, sigma_ref=sigma)
    probs = torch.softmax(torch.randn(2, 527, generator=torch.Generator().manual_seed(0)), dim=1)
    with open(tmp_path / "ref.pkl", "wb") as f:
        pickle.dump({"p0": probs[0], "p9": probs[1]}, f)  # stable-audio-metrics writes pickle.dump({id: tensor})
    cfg = _audio_config(root, "out2", "reference.audio=null", f"reference.fd_openl3={tmp_path / 'ref.npz'}",
                        f"reference.kl_passt={tmp_path / 'ref.pkl'}", "metrics.clap=null",
                        "metrics.clap_tokenizer=null")  # fmt: skip
    metrics = run(cfg)["systems"]["gen"]["metrics"]
    features = [_features(root / "out2" / "features", root / "gen" / f"{i}.wav") for i in ("p0", "p1")]
    frames = np.concatenate([f["openl3"] for f in features])
    assert metrics["fd_openl3"] == pytest.approx(frechet_distance(*embedding_statistics(frames), mu, sigma), rel=1e-6)
    p0 = features[0]["passt_probabilities"]
    assert metrics["kl_passt"] == pytest.approx(matched_kl({"p0": p0}, {"p0": probs[0].double().numpy()}).kl, rel=1e-6)
    assert metrics["kl_passt_unmatched"] == 1  # p1 has no reference: counted, left out of the mean
    assert set(metrics) == {"fd_openl3", "kl_passt", "kl_passt_unmatched"}  # no CLAP; no R/C without reference audio


@pytest.mark.slow
def test_arc_eval_probes_generate_from_a_checkpoint_and_resume(pretrained, tmp_path):
    overrides = ["metrics=probes", "prompts=2", "renderings=2", f"paths.output_dir={tmp_path}",
                 f"+systems.fast.checkpoint={pretrained}", "+systems.fast.steps=2",
                 f"+systems.base.checkpoint={pretrained}", "+systems.base.sampler=euler", "+systems.base.steps=3",
                 "+systems.base.cfg_scale=3", "+trainer.enable_progress_bar=false"]  # fmt: skip
    results = run(compose_config("eval", overrides))
    assert list(results["systems"]) == ["fast", "base"]
    for system in results["systems"].values():
        assert {"acc_mean", "acc_all", "fd", "diversity", "clip_rate"} <= set(system["metrics"])
        assert 0 <= system["metrics"]["acc_mean"] <= 1 and system["files"]["evaluated"] == 4
        assert system["generation"]["clips"] == 4 and system["generation"]["seconds_per_clip"] > 0
    audio = tmp_path / "fast" / "audio"
    assert sorted(p.relative_to(audio).as_posix() for p in audio.rglob("*.wav")) == [
        "rendering1/tones000.wav", "rendering1/tones001.wav", "tones000.wav", "tones001.wav"
    ]  # fmt: skip
    assert sf.info(audio / "tones000.wav").samplerate == 8000
    for name in ("probe_accuracy.png", "diversity_vs_adherence.png", "acc_mean_per_prompt.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| chance |" in (tmp_path / "results.md").read_text()
    # per clip: its caption and each attribute right (1) or wrong (0), which the table's accuracies average
    items = list(csv.DictReader((tmp_path / "items.csv").open()))
    captions = {p.id: p.caption for p in read_prompts(2, 0)}
    assert len(items) == 8 and all(i["caption"] == captions[i["id"]] for i in items)
    for i in items:
        hits = [float(i[f"acc_{name}"]) for name in ATTRIBUTES]
        assert set(hits) <= {0.0, 1.0} and float(i["acc_mean"]) == pytest.approx(np.mean(hits))
    for name, system in results["systems"].items():
        rows = [i for i in items if i["system"] == name]
        for attribute in ATTRIBUTES:
            per_clip = np.mean([float(i[f"acc_{attribute}"]) for i in rows])
            assert system["metrics"][f"acc_{attribute}"] == pytest.approx(per_clip)

    # killed after some files: the rerun makes only the missing one, the same audio as the first time (seeded; in
    # a batch of 1 instead of 4, so float rounding may move a sample by one 16-bit step)
    lost = _read(audio / "rendering1" / "tones001.wav")
    (audio / "rendering1" / "tones001.wav").unlink()
    kept = (audio / "tones000.wav").stat().st_mtime_ns
    again = run(compose_config("eval", overrides))
    assert np.abs(_read(audio / "rendering1" / "tones001.wav") - lost).max() <= 2 / 32768
    assert (audio / "tones000.wav").stat().st_mtime_ns == kept
    for name, system in again["systems"].items():
        assert system["metrics"] == pytest.approx(results["systems"][name]["metrics"], rel=1e-3)
    assert again["systems"]["fast"]["generation"]["clips"] == 1  # the timing of what this run generated
    assert again["systems"]["base"]["generation"] == results["systems"]["base"]["generation"]  # kept on disk


def _arc_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "arc-eval"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, env=env)


def test_arc_eval_user_errors_are_one_line_and_exit_2(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "caption": "a dog"}) + "\n")
    env = {**os.environ, "ARC_METRICS_CACHE": str(tmp_path / "empty")}
    common = [f"prompts={prompts}", f"hydra.run.dir={tmp_path / 'run'}"]
    cases = {
        "no system to evaluate": [],
        "unknown keys ['stpes']": ["+systems.x.checkpoint=a.ckpt", "+systems.x.stpes=4"],
        "needs one of audio": ["+systems.x.audio=gen", "+systems.x.checkpoint=a.ckpt"],
        "openl3_audio_mel256_env.h5 are not at": ["+systems.x.audio=gen"],  # the weights, before any audio is read
        "has an empty 'id'": ["+systems.x.audio=gen", f"prompts={tmp_path / 'bad.jsonl'}"],
    }
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "", "caption": "a dog"}) + "\n")
    for message, args in cases.items():
        result = _arc_eval(*common, *args, env=env)
        assert result.returncode == 2, (message, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("arc-eval: error: ") and message in lines[-1], (message, lines[-1])
        assert "Traceback" not in result.stderr
        if "openl3" in message:
            assert "https://github.com/marl/openl3/raw/models/openl3_audio_mel256_env-v0_4_0.h5.gz" in lines[-1]


@pytest.mark.slow
def test_arc_eval_shards_generation_and_features_across_ddp_processes(pretrained, tmp_path):
    """Two CPU processes (Lightning's DDP launcher, as trainer=ddp on GPUs) split the files; the numbers equal a
    single process's."""
    common = ["metrics=probes", "prompts=3", "renderings=2", f"+systems.a.checkpoint={pretrained}",
              "+systems.a.steps=2"]  # fmt: skip
    for name, extra in (("one", []), ("two", ["trainer.devices=2", "+trainer.strategy=ddp"])):
        result = _arc_eval(*common, f"hydra.run.dir={tmp_path / name}", *extra)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads((tmp_path / n / "results.json").read_text())["systems"]["a"] for n in ("one", "two"))
    assert two["files"]["evaluated"] == 6
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-3)


def test_a_silent_file_gets_an_error_record_not_a_crash(tmp_path):
    """Peak normalisation is undefined on silence (the reference would divide by zero): the file is recorded as
    such, counted with the unreadable ones, and the others are embedded."""
    import lightning as L

    from arc.metrics.evaluate import compute_features
    from arc.metrics.sets import AudioMetrics

    sf.write(tmp_path / "silent.wav", np.zeros((4410, 2), np.float32), RATE)
    sf.write(tmp_path / "ok.wav", _clip(0), RATE)
    metrics = AudioMetrics(None, tiny_metrics.passt(), None, None)

    def make_trainer(precision):
        return L.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)  # fmt: skip

    silent, ok = compute_features(metrics, [tmp_path / "silent.wav", tmp_path / "ok.wav"], tmp_path / "f", False,
                                  make_trainer)  # fmt: skip
    assert "silent.wav: the clip is silent" in str(silent["error"])
    assert ok["passt_probabilities"].shape == (527,) and "error" not in ok
