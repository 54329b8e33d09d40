"""arc-encode: pre-encode a manifest's audio into latent shards (resumable; see ``arc.data.latents``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from arc.cli.errors import debug_requested, report_user_errors
from arc.data.audio import AudioTextDataset, BadItemError
from arc.data.latents import encode_to_shards
from arc.models.pretransforms import PatchPretransform, Pretransform


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arc-encode", description=__doc__)
    parser.add_argument("--manifest", required=True, help="a .csv or .jsonl manifest with path, caption, optional id")
    parser.add_argument("--audio-root", required=True, help="directory that relative manifest paths start from")
    parser.add_argument("--out", required=True, help="shard directory; rerunning into it resumes")
    parser.add_argument("--sample-rate", type=int, required=True, help="rate the audio is resampled to (Hz)")
    parser.add_argument("--num-samples", type=int, required=True, help="samples per item, from the file's start")
    parser.add_argument("--channels", type=int, default=2, choices=(1, 2))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--patch-size", type=int, help="use the weightless PatchPretransform with this patch size")
    which.add_argument("--stable-audio", metavar="REPO_OR_DIR", help="use the Oobleck VAE of a Stable Audio model")
    parser.add_argument("--patch-scale", type=float, default=1.0, help="with --patch-size: the latent scale")
    parser.add_argument("--skip-bad", action="store_true", help="drop and count unusable rows instead of failing")
    parser.add_argument("--shard-size", type=int, default=256, help="items per shard file")
    parser.add_argument("--batch-size", type=int, default=16, help="items per pretransform call")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding audio")
    parser.add_argument("--device", default="cpu", help="device the pretransform runs on, e.g. cuda")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return parser


def load_pretransform(args: argparse.Namespace) -> Pretransform:
    if args.patch_size is not None:
        return PatchPretransform(args.sample_rate, args.channels, args.patch_size, scale=args.patch_scale)
    from arc.releases import load_stable_audio  # pulls in the full model stack; only this branch needs it

    return load_stable_audio(args.stable_audio).pretransform


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    report_user_errors("arc-encode", lambda: encode(args), debug=args.debug or debug_requested())


def encode(args: argparse.Namespace) -> None:
    dataset = AudioTextDataset(
        args.manifest,
        args.audio_root,
        sample_rate=args.sample_rate,
        audio_channels=args.channels,
        num_samples=args.num_samples,
        random_crop=False,
        skip_bad=args.skip_bad,
    )
    pretransform = load_pretransform(args).to(args.device)
    try:
        summary = encode_to_shards(
            dataset,
            pretransform,
            args.out,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            device=args.device,
            num_workers=args.num_workers,
        )
    except BadItemError as err:
        raise BadItemError(f"{err} (--skip-bad leaves such rows out and counts them)", err.reason) from err
    print(
        f"{summary.items} items in {args.out}: {summary.shards_written} shards written, "
        f"{summary.shards_skipped} already complete"
    )
    skipped = ", ".join(f"{reason}={count}" for reason, count in sorted(dataset.skipped.items()))
    print(f"bad rows skipped: {skipped or 'none'}")


if __name__ == "__main__":
    main()
