"""Crawling: download an FFHQ-schema manifest, or search Flickr for CC photos and download them.

    from ffhq_tools.crawl import download_manifest, DownloadOptions, crawl_flickr, FlickrQuery
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "download_manifest": "ffhq_tools.crawl.downloader",
    "download_files": "ffhq_tools.crawl.downloader",
    "DownloadOptions": "ffhq_tools.crawl.downloader",
    "DownloadReport": "ffhq_tools.crawl.downloader",
    "HttpSettings": "ffhq_tools.crawl.http",
    "FileSpec": "ffhq_tools.crawl.manifest",
    "ManifestError": "ffhq_tools.crawl.manifest",
    "load_manifest": "ffhq_tools.crawl.manifest",
    "manifest_specs": "ffhq_tools.crawl.manifest",
    "select_specs": "ffhq_tools.crawl.manifest",
    "format_stats": "ffhq_tools.crawl.stats",
    "verify_file": "ffhq_tools.crawl.verify",
    "crawl_flickr": "ffhq_tools.crawl.flickr_crawl",
    "FlickrQuery": "ffhq_tools.crawl.flickr_search",
    "search_all": "ffhq_tools.crawl.flickr_search",
    "build_manifest": "ffhq_tools.crawl.flickr_crawl",
    "FlickrClient": "ffhq_tools.crawl.flickr_api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import on first use, so `ffhq-tools --help` does not pay for numpy and PIL."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ffhq_tools.crawl' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
