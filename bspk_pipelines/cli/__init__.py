"""`bspk`: check brand configs, preview a file, sync drop folders once, retry failed files, backfill months, write extracts, manage webhooks, run the demo, write a workspace of several code locations."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

# The module of each command, imported only when the command runs: `bspk --help` and `bspk
# check-config` never pay for Dagster, and `bspk serve` (the API's process) never loads it.
COMMANDS = {
    "check-config": "bspk_pipelines.cli.check_config",
    "sync": "bspk_pipelines.cli.sync",
    "retry": "bspk_pipelines.cli.retry",
    "preview": "bspk_pipelines.cli.preview",
    "backfill": "bspk_pipelines.cli.backfill",
    "extract": "bspk_pipelines.cli.extract",
    "webhooks": "bspk_pipelines.cli.webhooks",
    "demo": "bspk_pipelines.cli.demo",
    "serve": "bspk_pipelines.cli.serve",
    "dev": "bspk_pipelines.cli.dev",
    "api-keys": "bspk_pipelines.cli.api_keys",
    "entities": "bspk_pipelines.cli.entities",
    "workspace": "bspk_pipelines.cli.workspace",
}


def _month(text: str) -> str:
    try:
        return time.strftime("%Y-%m", time.strptime(text, "%Y-%m"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM; found {text!r}") from None


def print_or_write(text: str, path: str | None, wrote: str = "") -> None:
    """A command's text to standard output, or (`--write PATH`) to PATH with a line saying so."""
    if path is None:
        sys.stdout.write(text)
        return
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {path}{wrote}")


def main(argv: list[str] | None = None) -> int:
    """The `bspk` entry point: the arguments parsed, then the command's module run with them."""
    parser = argparse.ArgumentParser(prog="bspk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate every brand file in the mappings folder")
    p.add_argument("--mappings", help="folder of brand YAML files (default: $BSPK_MAPPINGS_DIR or mappings/)")
    p.add_argument("--sample", nargs="?", action="append", const="newest", metavar="FILE",
                   help="check the file mappings' columns against FILE's header (repeatable); with no FILE, against "
                        "the newest file of each pattern in the drop folders")
    p.add_argument("--connect", action="store_true",
                   help="also open each source's drop store (SFTP: host key and credentials; S3: bucket and "
                        "permissions) and the landing zone's bucket, list it once and close it: ok or the reason, "
                        "per source")
    p = sub.add_parser("sync", help="process everything pending in brands' drop folders once")
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds a file must stop growing (default 1)")
    p.add_argument("--allow-failed", action="store_true", help="exit 0 even if a file failed")
    p = sub.add_parser("retry", help="run a brand's failed deliveries again with its current config")
    p.add_argument("--brand", required=True, help="brand id")
    p.add_argument("--file", help="only the deliveries under this name (a file name, or a delivery such as name@2)")
    p = sub.add_parser("preview", help="dry-run one file by a brand's config: mapped rows, rejects, what it would "
                                        "set; writes nothing. Without --brand (or with --detect): what an unknown "
                                        "file looks like and the dialect lines that read it")
    p.add_argument("--brand", help="brand id (without one, the file is detected: see --detect)")
    p.add_argument("--detect", action="store_true",
                   help="say what the file looks like (shape, encoding, delimiter, header, trailer, sheets, JSON "
                        "records) and suggest its dialect lines for the brand file, with the rows they read")
    p.add_argument("file", help="the file, wherever it is (its name says which source and entities it feeds)")
    p.add_argument("--source", help="the brand's source, when the name fits several")
    p.add_argument("--rows", type=int, default=5, help="mapped rows shown per entity, or rows of a detection (default 5)")
    p = sub.add_parser("backfill", help="rebuild a range of months of a brand's sales history, or reload a Shopify "
                                        "source whole")
    p.add_argument("--brand", required=True)
    p.add_argument("--from", dest="start", type=_month, help="first month, YYYY-MM")
    p.add_argument("--to", dest="end", type=_month, help="last month, YYYY-MM")
    p.add_argument("--source", help="a Shopify source: every object pulled again through bulk operations, then applied")
    p.add_argument("--entity", default="sales", help=argparse.SUPPRESS)
    p = sub.add_parser("extract", help="write brands' incremental extracts to their outboxes now")
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p = sub.add_parser("webhooks", help="deliver, list, replay or re-enable webhooks; re-encrypt their stored "
                                        "secrets (rotate-key); or receive them locally")
    p.add_argument("action", choices=["deliver", "list", "replay", "enable", "rotate-key", "receive"])
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p.add_argument("--endpoint", type=int, help="endpoint id (replay: only its deliveries; enable: required)")
    p.add_argument("--event", help="replay: only this webhook-id (msg_...)")
    p.add_argument("--budget", type=float, default=40, help="deliver: seconds to keep delivering (default 40)")
    p.add_argument("--port", type=int, default=8765, help="receive: port on 127.0.0.1 (default 8765)")
    p.add_argument("--path", default="/webhooks", help="receive: URL path (default /webhooks)")
    p.add_argument("--secret-env", default="BSPK_WEBHOOK_SECRET", help="receive: variable holding the whsec_ secret")
    p = sub.add_parser("demo", help="generate the sample brands' files, ingest them, and show webhooks and extracts")
    p.add_argument("--settle", type=float, default=1.0)
    p = sub.add_parser("serve", help="serve the REST API (Extraction, Platform, import upload)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p = sub.add_parser("dev", help="dagster dev and the REST API together, stopped together (SIGTERM, Ctrl-C)")
    p.add_argument("--host", default="127.0.0.1", help="address both listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    p.add_argument("--api-port", type=int, default=8000, help="the REST API's port (default 8000)")
    p = sub.add_parser("api-keys", help="create, list or revoke a brand's API keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--brand", required=True, help="brand id")
    p.add_argument("--name", help="create: what the key is for")
    p.add_argument("--key-id", help="revoke: the key's id (see list)")
    p = sub.add_parser("entities", help="the platform's files: columns, keys, rules and an example (docs/entities.md)")
    p.add_argument("name", nargs="?", help="an entity or file type (default: all, as docs/entities.md)")
    p.add_argument("--write", metavar="PATH", help="write the text to PATH instead of printing it")
    p = sub.add_parser("workspace", help="a Dagster workspace with one code location per `location:` the brand files "
                                         "name, each loading only its brands")
    p.add_argument("--write", metavar="PATH", help="write it to PATH (say, workspace.yaml) instead of printing it")
    p.add_argument("--working-directory", default=".", help="the locations' working directory (default .: the "
                                                            "folder dagster is started in)")
    args = parser.parse_args(argv)
    from bspk_pipelines.model.brand_file import ConfigError

    stdout, sys.stdout = sys.stdout, _ReaderMayLeave(sys.stdout)
    try:
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except ConfigError as e:
        # A mistake in a brand file: each on one line, as check-config says them; exit status 2.
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 2
    finally:
        sys.stdout.flush()  # what is still buffered, while a reader gone is still taken quietly
        sys.stdout = stdout


class _ReaderMayLeave:
    """Standard output whose reader may leave early (`bspk sync | head -3`): the command goes on
    with its work and its exit code, and what it would still print goes to devnull, instead of a
    BrokenPipeError stopping a sync half way."""

    def __init__(self, stream):
        self._stream = stream

    def _reader_left(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
