"""arc: fast text-to-audio by Adversarial Relativistic-Contrastive (ARC) post-training."""

__version__ = "0.1.0"
