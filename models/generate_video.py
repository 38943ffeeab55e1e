"""Interpolation videos: MP4 (H.264) through imageio-ffmpeg, which ships its own ffmpeg
binary, or an animated GIF through PIL when imageio-ffmpeg is not installed.

MP4 frames are streamed to the encoder as they are rendered; the GIF fallback keeps its
frames until the end (PIL encodes a GIF in one call). Both are written to a temp file
beside the target and renamed when complete.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import atomic_path


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame[..., :3]


class VideoWriter:
    """`with VideoWriter(stem, fps) as video: video.add(frame)`; `video.path` is
    `stem.mp4` or `stem.gif`."""

    def __init__(self, stem: str | Path, fps: int = 30):
        self.fps = fps
        self.kind = "mp4" if mp4_available() else "gif"
        self.path = Path(stem).with_suffix(f".{self.kind}")
        self.frames = 0
        self._stack = contextlib.ExitStack()
        self._encoder = None
        self._gif_frames: list[np.ndarray] = []

    def __enter__(self) -> VideoWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path, suffix=f".{self.kind}"))
        return self

    def _start_mp4(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        height, width = frame.shape[:2]
        self._encoder = imageio_ffmpeg.write_frames(
            str(self._tmp), (width, height), fps=self.fps, codec="libx264", quality=8,
            pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1,
            output_params=["-f", "mp4"], ffmpeg_log_level="error")
        self._encoder.send(None)

    def add(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(_rgb(frame))
        if self.kind == "mp4":
            if self._encoder is None:
                self._start_mp4(frame)
            self._encoder.send(frame.tobytes())
        else:
            self._gif_frames.append(frame)
        self.frames += 1

    def _finish(self) -> None:
        if self.kind == "mp4" and self._encoder is not None:
            self._encoder.close()
        elif self._gif_frames:
            from PIL import Image

            first, *rest = (Image.fromarray(f) for f in self._gif_frames)
            first.save(self._tmp, format="GIF", save_all=True, append_images=rest,
                       duration=round(1000 / self.fps), loop=0)

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            if self._encoder is not None:
                with contextlib.suppress(Exception):
                    self._encoder.close()
            self._stack.__exit__(kind, exc, tb)
            return
        try:
            self._finish()
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(None, None, None)
