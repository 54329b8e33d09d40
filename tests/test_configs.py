"""The real-model and scale-out configs compose as documented (they need GPUs and weights to run, not to compose)."""

from hydra import compose, initialize_config_dir

from arc.config import CONF_DIR, compose_config


def test_sao_small_arc_follows_spec_3_9():
    cfg = compose_config("train", ["experiment=sao_small_arc", "trainer=ddp_arc"])
    module = cfg.module
    assert module._target_ == "arc.training.arc.ARCModule"
    assert module.discriminator.exit_layer == 12 and module.discriminator.channels == 128
    assert cfg.model.dit.depth == 16 and module.model.model == cfg.model
    assert module.g_optimizer.lr == module.d_optimizer.lr == 1e-6
    assert list(module.g_optimizer.betas) == [0.9, 0.95] and module.g_optimizer.weight_decay == 0.01
    assert module.ema_decay == 0.9999 and module.gradient_clip_val == 1.0
    assert (module.r1r2_gamma, module.r1r2_sigma, module.contrastive_weight) == (1.0, 0.05, 1.0)
    assert cfg.pretrained == "stabilityai/stable-audio-open-small"
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true" and cfg.trainer.precision == "bf16-mixed"


def test_loss_ablations_change_only_their_term():
    base = compose_config("train", ["experiment=tones_arc"]).module
    no_c = compose_config("train", ["experiment=tones_arc", "loss=arc_no_contrastive"]).module
    lsgan = compose_config("train", ["experiment=tones_arc", "loss=arc_lsgan"]).module
    assert (base.adversarial_loss, base.contrastive_weight) == ("relativistic", 1.0)
    assert (no_c.adversarial_loss, no_c.contrastive_weight) == ("relativistic", 0.0)
    assert (lsgan.adversarial_loss, lsgan.contrastive_weight) == ("lsgan", 1.0)


def test_slurm_launcher_takes_its_shape_from_the_trainer():
    overrides = ["hydra/launcher=slurm", "experiment=sao_small_arc", "trainer=ddp_arc", "trainer.num_nodes=2"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)


def test_fsdp_wraps_blocks_and_whole_dits():
    cfg = compose_config("train", ["experiment=sao_small_pretrain", "trainer=fsdp"])
    classes = [c.path for c in cfg.trainer.strategy.auto_wrap_policy.module_classes]
    assert classes == ["arc.models.transformer.TransformerBlock", "arc.models.dit.DiffusionTransformer"]


def test_sao_small_pretrain_loads_the_official_vae_and_samples_audio():
    cfg = compose_config("train", ["experiment=sao_small_pretrain"])
    assert cfg.module.model._target_ == "arc.training.checkpoints.load_pretrained_vae"
    assert cfg.module.model.source == "stabilityai/stable-audio-open-small"
    samples = cfg.callbacks.samples
    assert (samples.sampler, samples.steps, samples.cfg_scale) == ("euler", 100, 7.0)
