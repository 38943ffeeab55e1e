"""FFHQ-style face alignment: landmarks, the FFHQ quad, reference and fast warps, folder pipeline.

    from ffhq_tools.align import align_image, align_folder, AlignOptions, AlignConfig
"""

from ffhq_tools.align.pipeline import AlignConfig, AlignSummary, align_folder, align_image
from ffhq_tools.align.quad import AlignOptions, face_frame, plan_warp

__all__ = ["AlignConfig", "AlignOptions", "AlignSummary", "align_folder", "align_image",
           "face_frame", "plan_warp"]
