"""Where dlib's 150x150 face chip lies in an FFHQ-aligned image (torch-free).

`DLIB_CHIP_BOX` is the chip `dlib.get_face_chip(shape, 150, 0.25)` cuts, as fractions of the
FFHQ-aligned image: derived by detecting the 68 landmarks on a real photo (skimage's
astronaut, also rotated and rescaled), computing both the FFHQ quad and
`dlib.get_face_chip_details(shape, 150, 0.25)` from the same landmarks and expressing the
chip's corners in the quad's unit square; the chip's rotation equals the FFHQ rotation to
within half a degree. tests/test_demo_face_space.py re-derives it.
"""

WEIGHTS_NAME = "dlib-face-resnet"
CHIP_SIZE = 150
DLIB_CHIP_BOX = (0.177, 0.270, 0.836, 0.923)  # left, top, right, bottom (fractions)


def chip_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The chip's (left, top, right, bottom) in pixels of a width x height aligned image."""
    left, top, right, bottom = DLIB_CHIP_BOX
    return left * width, top * height, right * width, bottom * height
