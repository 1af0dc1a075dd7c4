"""The training configuration: dataclasses whose field help becomes ``train.py --help``.

The defaults here are what a bare ``python train.py`` runs (the embedded room on a CPU, an 850-step schedule
with 3DGS's colour / position learning rates raised for it: +1.4 dB held-out PSNR at 850 steps, 29.1 vs
26.7 dB at step 300; 6x was unstable). The presets in ``configs/`` name only what they change, layered on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dff_gs.core.config import option
from dff_gs.nerf.config import NerfConfig
from dff_gs.teachers.settings import TeacherSettings


@dataclass
class DataConfig:
    path: str = option("", "scene folder (transforms.json, COLMAP or Replica layout); empty = the embedded default "
                           "scene")
    format: str = option("auto", "scene format: auto | transforms | colmap | replica")
    downscale: int = option(0, "integer downscale factor applied on load; 0 = automatic: 1 on GPU, on CPU the smallest "
                                  "factor bringing the longer image side to data.max_side (images_N used if present)")
    max_side: int = option(800, "CPU resolution budget in pixels for data.downscale=0 (0 = no budget)")
    test_every: int = option(8, "every Nth view is a held-out test view (0 = none)")
    background: list[float] = option([1.0, 1.0, 1.0], "RGB that RGBA images are composited on and renders use "
                                                      "(white, as 3DGS / NeRF for Blender scenes)")
    skip_missing: bool = option(False, "train on the images that exist when the scene names missing ones (else an "
                                       "error)")
    labels: bool = option(True, "read the scene's ground-truth label maps (false: withhold them, as on a scene without "
                                "labels; the label-free teacher is used and no mIoU is reported)")


@dataclass
class ModelConfig:
    sh_degree: int = option(1, "spherical-harmonics degree of colour (3 on GPU; lower is faster on CPU)")
    feature_dim: int = option(16, "stored per-Gaussian feature dimension D (0 = colour only)")
    decoder: bool = option(True, "learn a linear decoder D -> teacher dim (else D must equal the teacher dim)")
    init: str = option("auto", "initialisation: auto (depth > points > region) | depth | points | region (where the "
                               "cameras look: the visual hull of RGBA silhouettes) | random (uniform in the bounds)")
    init_points: int = option(20000, "number of Gaussians at initialisation (depth / region / random init)")
    init_opacity: float = option(0.5, "initial opacity")
    init_scale: float = option(0.7, "initial scale as a multiple of the mean 3-NN distance")
    init_ply: str = option("", "start from this 3DGS PLY (any trainer's standard layout; overrides model.init)")


@dataclass
class OptimConfig:
    means_lr: float = option(4.8e-4, "learning rate of means, times the scene scale (3x 3DGS's: the short schedule)")
    quats_lr: float = option(1e-3, "learning rate of rotations")
    scales_lr: float = option(1e-2, "learning rate of log-scales (2x 3DGS's)")
    opacities_lr: float = option(5e-2, "learning rate of logit opacities")
    sh0_lr: float = option(7.5e-3, "learning rate of the SH DC term (3x 3DGS's)")
    shN_lr: float = option(3.75e-4, "learning rate of higher SH terms (3x 3DGS's)")
    features_lr: float = option(1e-2, "learning rate of per-Gaussian features")
    decoder_lr: float = option(1e-3, "learning rate of the feature decoder")
    means_lr_final: float = option(0.01, "final means learning rate as a fraction of the initial (exponential decay)")


@dataclass
class StrategyConfig:
    enabled: bool = option(True, "densify / prune with gsplat's DefaultStrategy")
    refine_start: int = option(100, "first step of densification")
    refine_stop_frac: float = option(0.5, "densify until this fraction of the steps")
    refine_every: int = option(100, "densify every N steps")
    grow_grad2d: float = option(2e-4, "image-plane gradient threshold to clone/split")
    grow_scale3d: float = option(0.01, "scale threshold (fraction of scene scale) between clone and split")
    prune_opa: float = option(0.005, "prune Gaussians below this opacity")
    reset_every: int = option(3000, "reset opacities every N steps (beyond the run = never)")
    max_gaussians: int = option(35000, "stop growing past this many Gaussians (a CPU budget; GPU presets raise it)")


@dataclass
class TrainConfig:
    steps: int = option(0, "optimisation steps; 0 = chosen for the scene (dff_gs.train.schedule): 850 when the "
                           "Gaussians start in place (depth maps, points, a PLY), else as many as 30M pixels buy "
                           "(850 to 3000), the number written to the run's config")
    backbone: str = option("gs", "gs (Gaussians) | nerf")
    backend: str = option("auto", "renderer: auto | torch | gsplat")
    device: str = option("auto", "auto | cpu | cuda")
    seed: int = option(0, "random seed")
    batch_views: int = option(0, "training views a step, rendered in one batch; the loss is the mean of the views' "
                                 "losses (learning rates unchanged). Under torchrun: split among the processes, a "
                                 "multiple of their number. 0 = one view per process (1 with plain python, N "
                                 "under torchrun's N), the number written to the run's config")
    batch_render: bool = option(True, "with batch_views > 1: render the step's views (a rank's share) in one batched "
                                      "call; false: one at a time, gradients accumulated view by view, summed in the "
                                      "order torchrun's ranks sum them (1 process = N ranks of one view each, bit for "
                                      "bit)")
    ssim_lambda: float = option(0.2, "weight of D-SSIM in the photometric loss")
    feature_lambda: float = option(0.1, "weight of the feature distillation loss")
    feature_start: int = option(0, "step from which the distillation loss is on")
    feature_max_side: int = option(128, "distillation loss on rendered features area-pooled to at most this many "
                                        "pixels on the longer side (0 = full size)")
    feature_teacher_grid: bool = option(True, "and never on a finer grid than the teacher's own maps, which carry "
                                              "nothing finer (4x-16x cheaper with patch teachers)")
    sh_degree_interval: int = option(300, "raise the active SH degree every N steps")
    log_every: int = option(25, "progress-bar and log interval")
    log: str = option("tensorboard", "training log besides history.json: tensorboard (event files in <run>/tb) | none")
    eval_every: int = option(0, "evaluate on test views every N steps (0 = only at the end)")
    checkpoint_every: int = option(500, "write a checkpoint every N steps (and at the end / on Ctrl-C, SIGTERM)")
    checkpoint_minutes: float = option(5.0, "and whenever this many minutes passed since the last one (0 = off)")
    num_render_views: int = option(4, "test views written as PNG renders")
    viewer: int = option(0, "serve the Gaussians in the browser on this port while training, updated every "
                            "viewer_every steps, with a pause button (0 = off; --viewer: 8080)")
    viewer_every: int = option(25, "steps between two updates of the training viewer")
    image_every: int = option(0, "with train.log=tensorboard, a comparison image (render | ground truth | feature "
                                 "PCA) of a training view every N steps (0 = off)")
    export: str = option("", "viewer exports beside point_cloud.ply through gsplat's exporter, a comma list of "
                             "ply (plain 3DGS PLY) | splat | ply_compressed (--export)")
    export_up: str = option("z", "up axis of the exports: z (our world) | y (Y-up viewers such as SuperSplat; --up)")
    lpips_weights: str = option("", "torchvision AlexNet (or VGG16) state dict for LPIPS in the metrics (never "
                                    "downloaded); empty: LPIPS is reported as unavailable")


@dataclass
class LiftConfig:
    enabled: bool = option(False, "lift teacher features onto model.init_ply in one pass instead of training (--lift)")
    steps: int = option(0, "after lifting, distil the features alone for N steps, geometry frozen (--lift-steps)")
    backend: str = option("auto", "lifting backend: auto | torch | gsplat | cuda_ext")
    top_k: int = option(0, "only each pixel's k largest compositing weights count (0 = all)")
    resolution: str = option("image", "image: resample teacher maps to the image pixels | map: render at map size")


@dataclass
class Config:
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
