"""The one table of defaults shared by the `metrics` / `fid` verbs and the Python API."""

from __future__ import annotations

# Preprocessing conventions for the FID Inception network (part of every cache key and row).
MODE_TF = "tf"                    # TF1 resize_bilinear (half_pixel_centers=False), (x-128)/128
MODE_PYTORCH_FID = "pytorch-fid"  # x/255, F.interpolate bilinear align_corners=False, 2x-1
MODE_CLEAN = "clean"              # clean-fid: PIL bicubic per channel in float, (x-128)/128
MODES = (MODE_TF, MODE_PYTORCH_FID, MODE_CLEAN)
DEFAULT_MODE = MODE_TF

# Feature networks: registry entries of ffhq_tools.weights.
INCEPTION_STATE_DICT = "inception-fid"   # pytorch-fid / torch-fidelity state dict
INCEPTION_TORCHSCRIPT = "inception-ts"   # NVIDIA TorchScript (takes uint8, resizes itself)
FEATURE_NETWORKS = (INCEPTION_STATE_DICT, INCEPTION_TORCHSCRIPT)
DEFAULT_FEATURE_NETWORK = INCEPTION_STATE_DICT
INCEPTION_RESOLUTION = 299
INCEPTION_FEATURE_DIM = 2048
INCEPTION_NUM_CLASSES = 1008

# Covariance normalisation: "unbiased" divides by N - 1 (TF StyleGAN, pytorch-fid, clean-fid,
# torch-fidelity), "biased" by N (stylegan2-ada-pytorch).
COVARIANCE_UNBIASED = "unbiased"
COVARIANCE_BIASED = "biased"
COVARIANCES = (COVARIANCE_UNBIASED, COVARIANCE_BIASED)
DEFAULT_COVARIANCE = COVARIANCE_UNBIASED

DEFAULT_BATCH_SIZE = 32
DEFAULT_SEED = 0
DEFAULT_METRICS = ("fid50k_full",)
DEFAULT_RUN_ROOT = "runs"

# Protocol constants (REFERENCE.md, "FID protocol" and "KID / IS").
FID_NUM_GEN = 50_000
FID50K_NUM_REAL = 50_000
KID_NUM_GEN = 50_000
KID_MAX_REAL = 1_000_000
KID_NUM_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1_000
KID_DEGREE = 3
KID_COEF0 = 1.0
IS_NUM_GEN = 50_000
IS_NUM_SPLITS = 10

# DINOv2 / CLIP feature networks and their metrics (dgm-eval, clean-fid; REFERENCE.md).
DINOV2_VIT_S = "dinov2-vit-s-14"
DINOV2_VIT_B = "dinov2-vit-b-14"
DINOV2_VIT_L = "dinov2-vit-l-14"
DINOV2_VIT_G = "dinov2-vit-g-14"
CLIP_VIT_B_32 = "clip-vit-b-32"
EMBEDDING_NETWORKS = (DINOV2_VIT_S, DINOV2_VIT_B, DINOV2_VIT_L, DINOV2_VIT_G, CLIP_VIT_B_32)
FD_DINOV2_NUM_GEN = 50_000
KD_NUM_GEN = 50_000
PRDC_NUM = 10_000                 # dgm-eval's --reduced_n
PRDC_NEAREST_K = 5                # dgm-eval's --nearest_k (Naeem et al. 2020)
FD_INF_NUM_GEN = 50_000
FD_INF_NUM_POINTS = 15            # dgm-eval's compute_FD_infinity
FD_INF_MIN_GEN = 5_000
AUTHPCT_NUM_GEN = 50_000          # dgm-eval's --nsample
AUTHPCT_MAX_REAL = 50_000
FLD_NUM = 10_000                  # dgm-eval's --reduced_n for FLS
FLD_STEPS = 100                   # dgm-eval's optimize_sigmas: Adam, lr 0.5, x0.1 at step 50
FLD_LR = 0.5
FLD_LR_MILESTONE = 50
FLD_LR_GAMMA = 0.1
FLD_LOG_SIGMA_INIT = 0.0
FLD_LOG_SIGMA_CLAMP = (-100.0, 20.0)
