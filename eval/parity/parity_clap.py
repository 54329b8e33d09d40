"""Parity of arc's CLAP (transformers' ClapModel loading LAION's checkpoint) with laion-clap 1.1.7, on shared
random weights, through each side's own preprocessing.

    <reference venv>/bin/python eval/parity/parity_clap.py reference OUT   # laion-clap: weights, embeddings
    .venv/bin/python eval/parity/parity_clap.py compare OUT                 # arc: load the file, compare

The reference step builds ``CLAP_Module(enable_fusion=True, amodel="HTSAT-tiny")`` offline (its tokenizers and
``RobertaModel.from_pretrained`` stubbed, as ../shared/docs/EVAL-ORACLES.md describes; seed 0), saves
``{"state_dict": {"module." + key: tensor}}`` as ``OUT/630k-audioset-fusion-best.pt``, and embeds fixed 48 kHz
clips with ``get_audio_embedding_from_data`` (after stable-audio-metrics' peak and int16 steps) and fixed token
ids with ``get_text_embedding``. The compare step loads that file with ``arc.metrics.clap.load_laion_clap`` and
embeds the same inputs with arc's preprocessing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SECONDS = (3, 10, 15)  # 15 s: the fusion features draw random chunks; both sides seed NumPy with 0 first


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(15 * 48000) / 48000
    base = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.05 * rng.normal(size=t.size)
    return [base[: s * 48000].astype(np.float32) for s in SECONDS]


def token_ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.ones(2, 77, dtype=torch.long)  # RoBERTa: <s> = 0, </s> = 2, <pad> = 1
    ids[0, :6] = torch.tensor([0, 10, 2000, 345, 7, 2])
    ids[1, :4] = torch.tensor([0, 4321, 99, 2])
    return ids, (ids != 1).long()


def reference(out: Path) -> None:
    import transformers
    from transformers import RobertaConfig, RobertaModel

    for name in ("BertTokenizer", "RobertaTokenizer", "BartTokenizer"):  # loaded from the hub at import time
        getattr(transformers, name).from_pretrained = classmethod(lambda cls, *a, **k: None)
    roberta = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                            pad_token_id=1)  # fmt: skip
    RobertaModel.from_pretrained = classmethod(lambda cls, *a, **k: RobertaModel(roberta))
    import laion_clap

    torch.manual_seed(0)
    module = laion_clap.CLAP_Module(enable_fusion=True, amodel="HTSAT-tiny", device="cpu")
    module.eval()
    out.mkdir(parents=True, exist_ok=True)
    state = {"module." + k: v for k, v in module.model.state_dict().items()}
    torch.save({"state_dict": state}, out / "630k-audioset-fusion-best.pt")
    audio = []
    with torch.no_grad():
        for clip in clips():
            x = clip / np.abs(clip).max() * 10 ** (-1 / 20)  # pyloudnorm's peak normalisation to -1 dBFS
            x = (np.clip(x, -1, 1) * 32767.0).astype(np.int16) / 32767.0
            np.random.seed(0)
            audio.append(module.get_audio_embedding_from_data(x=x[None].astype(np.float32), use_tensor=False)[0])
        ids, mask = token_ids()
        text = module.model.get_text_embedding({"input_ids": ids, "attention_mask": mask}).numpy()
    np.savez(out / "reference.npz", audio=np.stack(audio), text=text)
    print(f"wrote {out}")


def compare(out: Path) -> None:
    from arc.metrics.clap import clap_audio_embeddings, clap_feature_extractor, clap_text_embeddings, load_laion_clap

    model = load_laion_clap(out / "630k-audioset-fusion-best.pt")
    expected = np.load(out / "reference.npz")
    extractor = clap_feature_extractor()
    audio = np.concatenate([clap_audio_embeddings(model, extractor, [clip], seed=0) for clip in clips()])
    text = clap_text_embeddings(model, *token_ids())
    print("| input | max abs diff | cosine(arc, reference) |\n|---|---|---|")
    for i, s in enumerate(SECONDS):
        diff = np.abs(audio[i] - expected["audio"][i]).max()
        print(f"| audio {s} s | {diff:.1e} | {float(audio[i] @ expected['audio'][i]):.6f} |")
    for i in range(len(text)):
        diff = np.abs(text[i] - expected["text"][i]).max()
        print(f"| text {i} | {diff:.1e} | {float(text[i] @ expected['text'][i]):.6f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("reference", "compare"))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    (reference if args.step == "reference" else compare)(args.out)


if __name__ == "__main__":
    main()
