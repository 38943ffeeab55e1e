"""Packed face datasets: HDF5 writer (ProGAN h5tool layout + provenance), shard merge, info /
verify, export / import of stylegan2-ada datasets, and the `H5Dataset` reader.

    from ffhq_tools.data import H5Dataset, pack_folder, merge_shards, export, dataset_info
"""

from ffhq_tools.data.export import export
from ffhq_tools.data.info import dataset_info, verify
from ffhq_tools.data.reader import H5Dataset
from ffhq_tools.data.writer import PackOptions, merge_shards, pack

pack_folder = pack  # the name the cross-area contract uses

__all__ = ["H5Dataset", "PackOptions", "dataset_info", "export", "merge_shards", "pack",
           "pack_folder", "verify"]
