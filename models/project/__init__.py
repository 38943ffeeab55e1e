"""Projection of real faces into W / W+ (stylegan2-ada-pytorch's projector.py protocol) and
StyleGAN2's attribution test.

    from models.project import Projector, ProjectionProtocol, collect_targets, prepare_pixels
"""

from models.project.projector import (
    EmbeddingDistance,
    Projection,
    ProjectionError,
    Projector,
    WStatistics,
    check_projectable,
    w_statistics,
)
from models.project.schedule import ProjectionProtocol, learning_rate, w_noise_scale
from models.project.targets import Target, collect_targets, prepare_pixels

__all__ = ["EmbeddingDistance", "Projection", "ProjectionError", "ProjectionProtocol",
           "Projector", "Target", "WStatistics", "check_projectable", "collect_targets",
           "learning_rate", "prepare_pixels", "w_noise_scale", "w_statistics"]
