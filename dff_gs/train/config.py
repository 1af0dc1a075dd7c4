"""The training configuration: dataclasses whose field help becomes ``train.py --help``.

The defaults here are what a bare ``python train.py`` runs (the embedded room on a CPU, an 850-step schedule
with 3DGS's colour / position learning rates raised for it: +1.4 dB held-out PSNR at 850 steps, 29.1 vs
26.7 dB at step 300; 6x was unstable). The presets in ``configs/`` name only what they change, layered on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dff_gs.core.backends import Backend
from dff_gs.core.config import Section, option
from dff_gs.core.errors import ConfigError, quote
from dff_gs.core.rules import LEARNING_RATE, MAX_FEATURE_DIM, POSITIVE, at_least, count, finite, within
from dff_gs.data.config import DataConfig
from dff_gs.io.export import parse_exports
from dff_gs.nerf.config import NerfConfig
from dff_gs.teachers.settings import TeacherSettings

MAX_GAUSSIANS = 50_000_000
"""Most Gaussians a run may start with or grow to: ~8x the largest 3DGS scenes (~6M); each costs ~1 KB with its
optimizer state."""
BATCH_VIEWS = ((lambda v: finite(v) and 0 <= v <= 1024), "must be in [1, 1024] (0: one view per process)")

InitMethod = Literal["auto", "depth", "points", "region", "random"]
"""``model.init``: where the Gaussians start (:func:`dff_gs.train.schedule.init_method`)."""
BackboneName = Literal["gs", "nerf"]
"""``train.backbone``: Gaussians, or the NeRF-DFF baseline."""
LogKind = Literal["tensorboard", "none"]
UpAxis = Literal["z", "y"]
LiftBackend = Literal["auto", "torch", "gsplat", "cuda_ext"]
"""``lift.backend``: the lifting backends (:func:`dff_gs.lift.lift_features`)."""
LiftResolution = Literal["image", "map"]


@dataclass
class ModelConfig(Section):
    sh_degree: int = option(1, "spherical-harmonics degree of colour (3 on GPU; lower is faster on CPU)",
                            rule=within(0, 3))
    feature_dim: int = option(16, "stored per-Gaussian feature dimension D (0 = colour only)",
                              rule=within(0, MAX_FEATURE_DIM))
    decoder: bool = option(True, "learn a linear decoder D -> teacher dim (else D must equal the teacher dim)")
    init: InitMethod = option("auto", "initialisation: auto (depth > points > region) | depth | points | region "
                                      "(where the cameras look: the visual hull of RGBA silhouettes) | random "
                                      "(uniform in the bounds)")
    init_points: int = option(20000, "number of Gaussians at initialisation (depth / region / random init)",
                              rule=within(1, MAX_GAUSSIANS))
    init_beyond: float = option(0.3, "region init: this share of the initial Gaussians starts beyond the region, "
                                     "on training pixels' rays (what the views show past the content: a floor to "
                                     "the horizon, walls, sky; dff_gs.data.region.beyond_points); depth init: at "
                                     "most this share, on the pixels the depth maps leave empty (the sky), when "
                                     "they are at least 1% of the pixels; points init: this many per point, past "
                                     "the points' box; 0 = none",
                                rule=within(0, 1))
    init_opacity: float = option(0.5, "initial opacity", rule=within(0, 1, open_low=True))
    init_scale: float = option(0.7, "initial scale as a multiple of the mean 3-NN distance", rule=POSITIVE)
    init_ply: str = option("", "start from this 3DGS PLY (any trainer's standard layout; overrides model.init)")
    antialiased: bool = option(True, "train and render with Mip-Splatting's 2D filter (gsplat's rasterize_mode="
                                     "antialiased, on every backend): a view from farther than the training views "
                                     "does not alias; kept with the model (its PLY's sidecar); false: classic 3DGS")


@dataclass
class OptimConfig(Section):
    means_lr: float = option(4.8e-4, "learning rate of means, times the scene scale (3x 3DGS's: the short schedule)",
                             rule=LEARNING_RATE)
    quats_lr: float = option(1e-3, "learning rate of rotations", rule=LEARNING_RATE)
    scales_lr: float = option(1e-2, "learning rate of log-scales (2x 3DGS's)", rule=LEARNING_RATE)
    opacities_lr: float = option(5e-2, "learning rate of logit opacities", rule=LEARNING_RATE)
    sh0_lr: float = option(7.5e-3, "learning rate of the SH DC term (3x 3DGS's)", rule=LEARNING_RATE)
    shN_lr: float = option(3.75e-4, "learning rate of higher SH terms (3x 3DGS's)", rule=LEARNING_RATE)
    features_lr: float = option(1e-2, "learning rate of per-Gaussian features", rule=LEARNING_RATE)
    decoder_lr: float = option(1e-3, "learning rate of the feature decoder", rule=LEARNING_RATE)
    means_lr_final: float = option(0.01, "final means learning rate as a fraction of the initial (exponential decay)",
                                   rule=within(0, 1, open_low=True))


@dataclass
class StrategyConfig(Section):
    enabled: bool = option(True, "densify / prune with gsplat's DefaultStrategy")
    refine_start: int = option(100, "first step of densification", rule=count(0))
    refine_stop_frac: float = option(0.5, "densify until this fraction of the steps", rule=within(0, 1))
    refine_every: int = option(100, "densify every N steps", rule=count(1))
    grow_grad2d: float = option(2e-4, "image-plane gradient threshold to clone/split", rule=at_least(0))
    grow_scale3d: float = option(0.01, "scale threshold (fraction of scene scale) between clone and split",
                                 rule=at_least(0))
    prune_opa: float = option(0.005, "prune Gaussians below this opacity", rule=within(0, 1))
    reset_every: int = option(3000, "reset opacities every N steps (beyond the run = never)", rule=count(1))
    max_gaussians: int = option(35000, "stop growing past this many Gaussians (a CPU budget; GPU presets raise it)",
                                rule=within(1, MAX_GAUSSIANS))


@dataclass
class TrainConfig(Section):
    steps: int = option(0, "optimisation steps; 0 = chosen for the scene (dff_gs.train.schedule): 850 when the "
                           "Gaussians start in place (depth maps, points, a PLY), else as many as 30M pixels buy "
                           "(850 to 3000), the number written to the run's config", rule=count(0))
    minutes: float = option(0.0, "instead of train.steps: the steps that fill this many minutes of training, measured "
                                 "on this machine before the run (dff_gs.train.budget; the Gaussians); 0 = off",
                            rule=at_least(0))
    backbone: BackboneName = option("gs", "gs (Gaussians) | nerf")
    backend: Backend = option("auto", "renderer: auto | torch | gsplat")
    device: str = option("auto", "auto | cpu | cuda")
    seed: int = option(0, "random seed")
    batch_views: int = option(0, "training views a step, rendered in one batch; the loss is the mean of the views' "
                                 "losses (learning rates unchanged). Under torchrun: split among the processes, a "
                                 "multiple of their number. 0 = one view per process (1 with plain python, N "
                                 "under torchrun's N), the number written to the run's config", rule=BATCH_VIEWS)
    batch_render: bool = option(True, "with batch_views > 1: render the step's views (a rank's share) in one batched "
                                      "call; false: one at a time, gradients accumulated view by view, summed in the "
                                      "order torchrun's ranks sum them (1 process = N ranks of one view each, bit for "
                                      "bit)")
    random_background: bool = option(False, "RGBA scenes: every training view over a random background colour of "
                                            "its own (the alpha is learned, not the background colour); renders, "
                                            "metrics and exports keep data.background")
    ssim_lambda: float = option(0.2, "weight of D-SSIM in the photometric loss", rule=within(0, 1))
    feature_lambda: float = option(0.1, "weight of the feature distillation loss", rule=at_least(0))
    feature_start: int = option(0, "step from which the distillation loss is on", rule=count(0))
    feature_max_side: int = option(128, "distillation loss on rendered features area-pooled to at most this many "
                                        "pixels on the longer side (0 = full size)", rule=count(0))
    feature_teacher_grid: bool = option(True, "and never on a finer grid than the teacher's own maps, which carry "
                                              "nothing finer (4x-16x cheaper with patch teachers)")
    sh_degree_interval: int = option(300, "raise the active SH degree every N steps", rule=count(1))
    log_every: int = option(25, "progress-bar and log interval", rule=count(1))
    log: LogKind = option("tensorboard", "training log besides history.json: tensorboard (event files in <run>/tb) "
                                         "| none")
    eval_every: int = option(0, "evaluate on test views every N steps (0 = only at the end)", rule=count(0))
    checkpoint_every: int = option(500, "write a checkpoint every N steps (and at the end / on Ctrl-C, SIGTERM)",
                                   rule=count(0))
    checkpoint_minutes: float = option(5.0, "and whenever this many minutes passed since the last one (0 = off)",
                                       rule=at_least(0))
    num_render_views: int = option(4, "test views written as PNG renders", rule=count(0))
    viewer: int = option(0, "serve the Gaussians in the browser on this port while training, updated every "
                            "viewer_every steps, with a pause button (0 = off; --viewer: 8080)", rule=within(0, 65535))
    viewer_every: int = option(25, "steps between two updates of the training viewer", rule=count(1))
    image_every: int = option(0, "with train.log=tensorboard, a comparison image (render | ground truth | feature "
                                 "PCA) of a training view every N steps (0 = off)", rule=count(0))
    export: str = option("", "viewer exports beside point_cloud.ply through gsplat's exporter, a comma list of "
                             "ply (plain 3DGS PLY) | splat | ply_compressed (--export)")
    export_up: UpAxis = option("z", "up axis of the exports: z (our world) | y (Y-up viewers such as SuperSplat; --up)")
    lpips_weights: str = option("", "torchvision AlexNet (or VGG16) state dict for LPIPS in the metrics (never "
                                    "downloaded); empty: LPIPS is reported as unavailable")

    def check(self, prefix: str = "") -> None:
        """The device is one torch names; the exports are known formats, of Gaussians."""
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ConfigError(f"{prefix}device={quote(self.device)}: must be auto | cpu | cuda[:N]")
        if self.export:
            parse_exports(self.export, f"{prefix}export")
            if self.backbone == "nerf":
                raise ConfigError(f"{prefix}export={self.export}: the NeRF backbone has no Gaussians to export")


@dataclass
class LiftConfig(Section):
    enabled: bool = option(False, "lift teacher features onto model.init_ply in one pass instead of training (--lift)")
    steps: int = option(0, "after lifting, distil the features alone for N steps, geometry frozen (--lift-steps)",
                        rule=count(0))
    backend: LiftBackend = option("auto", "lifting backend: auto | torch | gsplat | cuda_ext")
    top_k: int = option(0, "only each pixel's k largest compositing weights count (0 = all)", rule=count(0))
    resolution: LiftResolution = option("image", "image: resample teacher maps to the image pixels | map: render at "
                                                 "map size")


@dataclass
class Config(Section):
    out: str = option("", "run folder (empty = runs/<scene>-<time>)")
    resume: str = option("", "checkpoint to resume from (a run folder or a .pt file); the run continues with the "
                             "config it was trained with")
    force: bool = option(False, "replace the run already in the run folder `out` (train.py --force)")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    nerf: NerfConfig = field(default_factory=NerfConfig)
