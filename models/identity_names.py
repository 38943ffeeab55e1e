"""The identity networks a CLI can name (torch-free, for argparse): name -> weights entry.

arcface: pSp's ArcFace IR-SE50 (`models.arcface`, DualStyleGAN's identity loss);
dlib: dlib's face-recognition ResNet (`models.dlib_face_resnet`), shipped offline by
`face_recognition_models`; none: no identity term.
"""

IDENTITY_WEIGHTS = {"arcface": "arcface-ir-se50", "dlib": "dlib-face-resnet"}
IDENTITIES = (*IDENTITY_WEIGHTS, "none")
