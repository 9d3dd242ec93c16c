"""The bundled reference clips: shapes moving along paths the base model was never taught.

    python -m cav_core.shapes_world.references   # (re)writes them, deterministically
"""
from __future__ import annotations

import os

from ..video_io import write_video
from .architecture import FRAMES, PIXELS
from .scenes import Scene, render

REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "references")
FPS = 8.0

# name -> (scene, caption used to train on it)
REFERENCES: dict[str, Scene] = {
    "zigzag": Scene(colour="red", shape="square", background="white", motion="zigzag", size=0.22),
    "figure_eight": Scene(colour="blue", shape="circle", background="gray", motion="figure_eight", size=0.22),
    # A bright object on a dark background, unlike the other two. Drawn as a purple triangle on black the
    # same path was barely learned (fidelity 0.13; docs/eval/README.md, "The wave's look").
    "wave": Scene(colour="orange", shape="triangle", background="black", motion="wave", size=0.22),
}


def reference_path(name: str, ext: str = ".mp4") -> str:
    return os.path.join(REFERENCE_DIR, name + ext)


def reference_caption(name: str) -> str:
    return REFERENCES[name].caption("moving")


def appearance_caption(name: str) -> str:
    return REFERENCES[name].caption("")


def write_references() -> list[str]:
    written = []
    for name, scene in REFERENCES.items():
        frames = render(scene, FRAMES, PIXELS)
        for ext in (".mp4", ".gif"):
            written.append(write_video(reference_path(name, ext), frames, FPS))
    return written


if __name__ == "__main__":
    for path in write_references():
        print(path)
