"""`ffhq-tools crawl manifest MANIFEST.json ...` and `ffhq-tools crawl flickr ...`."""

from __future__ import annotations

import argparse
import os
import sys

from ffhq_tools.crawl.http import HttpSettings
from ffhq_tools.errors import FfhqToolsError

API_KEY_ENV = "FLICKR_API_KEY"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_download_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("download")
    g.add_argument("--workers", type=_positive(int), default=32, help="threads (default 32)")
    g.add_argument("--per-host", type=_positive(int), default=16,
                   help="requests in flight per host (default 16)")
    g.add_argument("--rate", type=_positive(float), default=None, metavar="REQ_PER_S",
                   help="global requests per second (default: unlimited)")
    g.add_argument("--attempts", type=_positive(int), default=10,
                   help="tries per file before it goes to failures.jsonl (default 10)")
    g.add_argument("--backoff", type=_positive(float), default=1.0, metavar="SECONDS",
                   help="base of the exponential backoff with jitter (default 1)")
    g.add_argument("--backoff-cap", type=_positive(float), default=60.0, metavar="SECONDS")
    g.add_argument("--max-retry-after", type=_positive(float), default=600.0, metavar="SECONDS",
                   help="longest Retry-After pause honoured (default 600)")
    g.add_argument("--connect-timeout", type=_positive(float), default=10.0, metavar="SECONDS")
    g.add_argument("--read-timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="longest silence between two reads (default 30)")
    g.add_argument("--file-timeout", type=_positive(float), default=600.0, metavar="SECONDS",
                   help="deadline for one whole file, however slowly its bytes trickle in; "
                        "a file over it goes to failures.jsonl (default 600)")
    g.add_argument("--max-size", type=_positive(int), default=256 * 1024 * 1024, metavar="BYTES",
                   help="refuse files larger than this (default 256 MiB)")
    g.add_argument("--verify-existing", action="store_true",
                   help="re-check files already on disk instead of trusting their size")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def download_options(args, decode: bool = False):
    from ffhq_tools.crawl.downloader import DownloadOptions

    return DownloadOptions(
        workers=args.workers, per_host=args.per_host, requests_per_second=args.rate,
        attempts=args.attempts, backoff_base=args.backoff, backoff_cap=args.backoff_cap,
        max_retry_after=args.max_retry_after,
        http=HttpSettings(connect_timeout=args.connect_timeout, read_timeout=args.read_timeout,
                          file_timeout=args.file_timeout, max_bytes=args.max_size),
        verify_existing=args.verify_existing, decode=decode, progress=not args.no_progress)


def _manifest(args) -> int:
    from ffhq_tools.crawl.downloader import download_manifest, failures_file_name
    from ffhq_tools.crawl.manifest import load_manifest, manifest_specs, parse_shard, select_specs
    from ffhq_tools.crawl.stats import format_stats

    shard = parse_shard(args.shard) if args.shard else None
    if args.stats:
        specs = manifest_specs(load_manifest(args.manifest), args.what, source=args.manifest)
        print(format_stats(select_specs(specs, args.category, args.license, shard)))
        return 0
    if args.out is None:
        raise FfhqToolsError("--out is required unless --stats is given")
    report = download_manifest(args.manifest, args.out, args.what, download_options(args),
                               args.category, args.license, shard)
    print(report.summary())
    if report.failed:
        print(f"{len(report.failed)} files failed; see {args.out}/{failures_file_name(shard)}",
              file=sys.stderr)
        return 1
    return 0


def _flickr(args) -> int:
    from ffhq_tools.crawl.flickr_api import FlickrClient
    from ffhq_tools.crawl.flickr_crawl import FlickrQuery, crawl_flickr, parse_upload_date

    api_key = args.api_key or os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise FfhqToolsError(f"no Flickr API key: pass --api-key or set {API_KEY_ENV}")
    low = parse_upload_date(args.min_upload_date, "--min-upload-date")
    high = parse_upload_date(args.max_upload_date, "--max-upload-date", end_of_day=True)
    query = FlickrQuery(text=args.text, tags=args.tags, licenses=tuple(_csv(args.licenses)),
                        min_upload_date=low, max_upload_date=high, per_page=args.per_page)
    client = FlickrClient(api_key, args.api_base, requests_per_hour=args.requests_per_hour,
                          http=HttpSettings(connect_timeout=args.connect_timeout,
                                            read_timeout=args.read_timeout,
                                            file_timeout=args.file_timeout),
                          attempts=args.attempts, backoff_base=args.backoff,
                          backoff_cap=args.backoff_cap, max_retry_after=args.max_retry_after)
    result = crawl_flickr(
        query, args.out, client, result_cap=args.result_cap,
        download=None if args.no_download else download_options(args, decode=True),
        progress=not args.no_progress, countries=args.countries)
    print(result.summary())
    return 1 if result.failed_downloads else 0


def add_verbs(verbs) -> None:
    parser = verbs.add_parser("crawl", help="download an FFHQ-schema manifest or crawl Flickr",
                              description=__doc__)
    sub = parser.add_subparsers(dest="crawl_verb", metavar="SOURCE")
    sub.required = True

    p = sub.add_parser("manifest", help="download and verify the files of an FFHQ v2 manifest")
    p.add_argument("manifest", metavar="MANIFEST.json")
    p.add_argument("--what", choices=("in_the_wild", "images", "thumbs"), default="in_the_wild")
    p.add_argument("--out", metavar="DIR", help="output folder (file_path is relative to it)")
    p.add_argument("--stats", action="store_true",
                   help="print category / license / country tables and exit")
    p.add_argument("--category", type=_csv, default=None, metavar="A,B",
                   help="only these categories (e.g. training,validation)")
    p.add_argument("--license", type=_csv, default=None, metavar="A,B",
                   help="only these license names, exactly as in the manifest")
    p.add_argument("--shard", metavar="I/N", help="process every N-th file starting at I")
    add_download_flags(p)
    p.set_defaults(func=_manifest)

    p = sub.add_parser("flickr", help="search Flickr for CC photos, write a manifest, download")
    p.add_argument("--text", default="", help="free-text search")
    p.add_argument("--tags", default="", help="comma-separated tags")
    p.add_argument("--licenses", default="2,4,8,9,10",
                   help="Flickr license ids (default: FFHQ's 2,4,8,9,10)")
    p.add_argument("--min-upload-date", required=True, metavar="YYYY-MM-DD|UNIX")
    p.add_argument("--max-upload-date", required=True, metavar="YYYY-MM-DD|UNIX")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--api-key", default=None,
                   help=f"Flickr API key (default and preferred: ${API_KEY_ENV}, since command "
                        f"lines are visible to other users; never written anywhere)")
    p.add_argument("--api-base", default="https://api.flickr.com/services/rest/",
                   help="REST endpoint (for mirrors and tests)")
    p.add_argument("--per-page", type=_positive(int), default=500)
    p.add_argument("--requests-per-hour", type=_positive(float), default=3600.0)
    p.add_argument("--result-cap", type=_positive(int), default=4000,
                   help="results one query can reach (Flickr: 4000)")
    p.add_argument("--countries", action="store_true",
                   help="fill each geotagged photo's metadata.country (one flickr.places.getInfo "
                        "per distinct place, cached in OUT/places.json)")
    p.add_argument("--no-download", action="store_true", help="write the manifest only")
    add_download_flags(p)
    p.set_defaults(func=_flickr)
