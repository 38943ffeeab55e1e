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
VGG16_TORCHVISION = "vgg16"       # torchvision VGG16 fc2 (precision / recall features)
VGG16_TORCHSCRIPT = "vgg16-ts"    # NVIDIA TorchScript VGG16
# Every network `--features NAME` takes (eval.features.networks holds their specs).
ALL_FEATURE_NETWORKS = (*FEATURE_NETWORKS, VGG16_TORCHVISION, VGG16_TORCHSCRIPT,
                        *EMBEDDING_NETWORKS)
# Networks of one space compute the same features (the two files of one network), so rows of
# either are one leaderboard column; `leaderboard compare` refuses a row of another space.
FEATURE_SPACES = {INCEPTION_STATE_DICT: "inception-2015-12-05",
                  INCEPTION_TORCHSCRIPT: "inception-2015-12-05",
                  VGG16_TORCHVISION: "vgg16", VGG16_TORCHSCRIPT: "vgg16",
                  **{name: name for name in EMBEDDING_NETWORKS}}
# DINOv2 / CLIP preprocessing conventions (eval.features.vit_preprocess).
MODE_DGM_EVAL = "dgm-eval"               # PIL bicubic to 224 x 224, ImageNet mean / std
MODE_TORCH_FIDELITY = "torch-fidelity"   # TF1 bilinear to 224 x 224 of the [0, 255] image
MODE_CLEAN_FID = "clean-fid"             # PIL bicubic shorter side 224, centre crop, CLIP
EMBEDDING_MODES = (MODE_DGM_EVAL, MODE_TORCH_FIDELITY, MODE_CLEAN_FID)
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
