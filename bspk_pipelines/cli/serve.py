"""`bspk serve`: the REST API with uvicorn, in a process that never loads Dagster."""

from __future__ import annotations

import argparse

import uvicorn

from bspk_pipelines.api.app import create_app
from bspk_pipelines.cli.environment import checked


def run(args: argparse.Namespace) -> int:
    """The REST API (Extraction API, Platform API, import upload) over the deployment's warehouse
    and drop folders, until Ctrl-C. The app is made first, so that a mistake in a setting (the
    Platform API stores webhook secrets: no key, no start) is one line before anything listens."""
    app = checked(create_app)
    print(f"API on http://{args.host}:{args.port} (OpenAPI at /openapi.json, docs at /docs); keys: `bspk api-keys`",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
