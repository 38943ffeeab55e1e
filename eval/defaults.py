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
