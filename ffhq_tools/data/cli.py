"""`ffhq-tools pack | info | export`: HDF5 datasets in the ProGAN h5tool layout."""

from __future__ import annotations


def add_verbs(verbs) -> None:
    return None
