"""DualStyleGAN's facial destylization (destylize.py) in z+, with our projection or a pSp encoder.

    from models.destylize import Destylizer, DestylizeProtocol, destylize_set
"""

from models.destylize.identity import FaceEmbedder, IdentityTerm, face_crop, load_identity
from models.destylize.pipeline import (
    DestylizeError,
    DestylizeProtocol,
    Destylizer,
    ExemplarResult,
    check_pair,
    copy_colour_layers,
)
from models.destylize.run import destylize_set
from models.destylize.zplus import FitSettings, central_z, fit_zplus, map_zplus, render_zplus

__all__ = ["DestylizeError", "DestylizeProtocol", "Destylizer", "ExemplarResult",
           "FaceEmbedder", "FitSettings", "IdentityTerm", "central_z", "check_pair",
           "copy_colour_layers", "destylize_set", "face_crop", "fit_zplus", "load_identity",
           "map_zplus", "render_zplus"]
