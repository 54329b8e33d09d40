"""PaSST ``passt_s_swa_p16_128_ap476`` (527 AudioSet classes) in plain PyTorch, with its front end, and
stable-audio-metrics' recipe for a clip's class probabilities (SPEC 6, KL_passt).

Matches hear21passt 0.0.26: ``AugmentMelSTFT`` in eval mode (pre-emphasis, STFT, Kaldi mel banks, log, fixed
normalisation) and ``PaSST`` (a distilled ViT on 16x16 patches with stride 10, separate frequency and time
position embeddings; the logits are ``head((cls + dist) / 2)``). Parameter names are the official checkpoint's
(``passt-s-f128-p16-s10-ap.476-swa.pt``), so it loads strictly as published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arc.metrics.audio import peak_normalize
from arc.metrics.weights import weight_path
from arc.releases import load_checkpoint_file, load_strict

SAMPLE_RATE = 32000
WINDOW_SECONDS, HOP_SECONDS = 10, 5


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: int, low_freq: float, high_freq: float) -> torch.Tensor:
    """Kaldi's triangular mel filters as (num_bins, n_fft // 2 + 1) weights on the power spectrum.

    ``mel(f) = 1127 ln(1 + f / 700)``; ``num_bins + 2`` edges equally spaced in mel from ``low_freq`` to
    ``high_freq``; filter b weighs FFT bin k (centre ``k sample_rate / n_fft``, k < n_fft / 2) by
    ``max(0, min((m_k - e_b) / (e_{b+1} - e_b), (e_{b+2} - m_k) / (e_{b+2} - e_{b+1})))`` on the mel scale; the
    Nyquist bin gets weight 0 (Kaldi's banks cover n_fft / 2 bins; hear21passt pads them with a zero column).
    ``high_freq <= 0`` counts from Nyquist, as in Kaldi.
    """
    nyquist = sample_rate / 2
    high = high_freq if high_freq > 0 else high_freq + nyquist
    if not 0 <= low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist}, got {low_freq} and {high}")

    def mel(f: torch.Tensor | float) -> torch.Tensor:
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    edges = mel(low_freq) + (mel(high) - mel(low_freq)) / (num_bins + 1) * torch.arange(num_bins + 2)
    bin_mel = mel(torch.arange(n_fft // 2, dtype=torch.float64) * sample_rate / n_fft)[None, :]  # (1, n_fft / 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up, down = (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0)  # (num_bins, n_fft / 2)
    return F.pad(banks, (0, 1)).float()


class PasstFrontEnd(nn.Module):
    """Mono 32 kHz audio (B, N) -> normalised log-mel (B, 128, N // 320 + 1), hear21passt's eval-mode front end:
    pre-emphasis ``x[n] - 0.97 x[n - 1]``, |STFT|^2 (n_fft 1024, hop 320, Hann window of 800, not periodic,
    centred, reflect padding), Kaldi mel banks (128, 0 Hz to fmax), ``(log(mel + 1e-5) + 4.5) / 5``.

    fmax 15000 Hz is hear21passt's ``sr / 2 - fmax_aug_range / 2`` with stable-audio-metrics' fmax_aug_range 2000.
    """

    def __init__(
        self,
        n_mels: int = 128,
        sample_rate: int = SAMPLE_RATE,
        win_length: int = 800,
        hop_length: int = 320,
        n_fft: int = 1024,
        fmin: float = 0.0,
        fmax: float = 15000.0,
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("banks", kaldi_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(audio[:, None], self.preemphasis)[:, 0]  # (B, N - 1)
        spec = torch.stft(
            x, self.n_fft, self.hop_length, self.win_length, self.window, center=True, return_complex=True
        )
        power = spec.real**2 + spec.imag**2  # (B, n_fft / 2 + 1, frames)
        return (torch.log(self.banks @ power + 1e-5) + 4.5) / 5


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch, stride=stride)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hs), scale hs^-1/2 as the reference
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Passt(nn.Module):
    """The PaSST transformer: log-mel (B, 1, 128, T) -> AudioSet logits (B, num_classes).

    Args (defaults: ``passt_s_swa_p16_128_ap476``): num_classes, embed_dim, depth, num_heads, mlp_ratio;
    mel_bins and max_frames, the input the position embeddings cover (998 frames = 10 s); patch and stride.
    """

    def __init__(
        self,
        num_classes: int = 527,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        mel_bins: int = 128,
        max_frames: int = 998,
        patch: int = 16,
        stride: int = 10,
    ):
        super().__init__()
        # hear21passt sizes the grid as input // stride: 128 // 10 = 12 = (128 - 16) // 10 + 1, 998 // 10 = 99
        grid_f, grid_t = mel_bins // stride, max_frames // stride
        self.patch_embed = PatchEmbed(embed_dim, patch, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, embed_dim))  # for the cls and dist tokens
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid_f, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, 1, grid_t))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, num_classes))
        self.head_dist = nn.Linear(embed_dim, num_classes)  # in the checkpoint; the eval forward does not use it

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim): the mean of the final cls and distillation tokens, the classification head's input."""
        x = self.patch_embed.proj(mel)  # (B, D, f, t)
        B, _, f, t = x.shape
        if t > self.time_new_pos_embed.shape[-1] or f != self.freq_new_pos_embed.shape[2]:
            raise ValueError(
                f"input of {mel.shape[-1]} frames x {mel.shape[-2]} mel bins gives a {f} x {t} patch grid; the "
                f"model covers {self.freq_new_pos_embed.shape[2]} x {self.time_new_pos_embed.shape[-1]} (10 s)"
            )
        x = x + self.time_new_pos_embed[..., :t] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)  # (B, f t, D)
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed  # (1, 2, D)
        x = self.norm(self.blocks(torch.cat([tokens.expand(B, -1, -1), x], dim=1)))
        return (x[:, 0] + x[:, 1]) / 2

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(mel))


class PasstClassifier(nn.Module):
    """Front end + PaSST: mono 32 kHz audio (B, N), N <= 10 s -> logits (B, 527)."""

    def __init__(self, net: Passt, front_end: PasstFrontEnd | None = None):
        super().__init__()
        self.front_end = front_end if front_end is not None else PasstFrontEnd()
        self.net = net

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(self.front_end(audio)[:, None])

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) embeddings (``Passt.features``) of (B, N) audio."""
        return self.net.features(self.front_end(audio)[:, None])


def load_passt(path: str | Path | None = None) -> PasstClassifier:
    """The official PaSST checkpoint (``weight_path("passt")`` unless ``path`` is given), loaded strictly."""
    path = weight_path("passt") if path is None else Path(path)
    state = load_checkpoint_file(path, "the PaSST checkpoint passt-s-f128-p16-s10-ap.476-swa.pt")
    net = Passt()
    load_strict(net, state, what=str(path))
    return PasstClassifier(net).eval()


def analysis_windows(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """stable-audio-metrics' windows over a mono clip: 10 s, hop 5 s, starts ``range(0, max(hop, N - hop), hop)``;
    a window cut short by the clip's end is zero-padded to 10 s if it is longer than 1.5 s, and otherwise kept
    as it is (the reference's rule, shorter input included)."""
    size, hop = WINDOW_SECONDS * sample_rate, (WINDOW_SECONDS - HOP_SECONDS) * sample_rate
    windows = []
    for start in range(0, max(hop, len(audio) - hop), hop):
        window = audio[start : start + size]
        if len(window) < size and len(window) > 0.15 * size:
            window = np.pad(window, (0, size - len(window)))
        windows.append(window)
    return windows


@torch.no_grad()
def passt_outputs(model: PasstClassifier, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (527,) class probabilities and the (embed_dim,) embedding of one mono 32 kHz clip, peak-normalised to
    -1 dBFS first. Probabilities: the logits of each analysis window averaged, then softmax (stable-audio-metrics'
    ``return_probabilities``, collect="mean"). Embedding: the windows' ``Passt.features`` averaged (what arc's
    R_passt / C_passt use; the paper does not say which PaSST embedding it took)."""
    device = next(model.parameters()).device
    windows = analysis_windows(peak_normalize(np.asarray(audio, dtype=np.float64)))
    full = [w for w in windows if len(w) == len(windows[0])]  # the 10 s windows, in one batch; then a short last one
    batches = [np.stack(full), *(w[None] for w in windows[len(full) :])]
    features = torch.cat([model.features(torch.from_numpy(b.astype(np.float32)).to(device)) for b in batches])
    logits = model.net.head(features).mean(dim=0)
    return torch.softmax(logits, dim=0).double().cpu().numpy(), features.mean(dim=0).double().cpu().numpy()
