"""`bspk serve`: the REST API with uvicorn, in a process that never loads Dagster."""

from __future__ import annotations

import argparse

import uvicorn

from bspk_pipelines.cli.environment import webhook_settings


def run(args: argparse.Namespace) -> int:
    """The REST API (Extraction API, Platform API, import upload) over the environment's warehouse
    and drop folders, until Ctrl-C."""
    webhook_settings()  # the Platform API stores webhook secrets: no key, no start
    print(f"API on http://{args.host}:{args.port} (OpenAPI at /openapi.json, docs at /docs); keys: `bspk api-keys`",
          flush=True)
    uvicorn.run("bspk_pipelines.api.app:create_app", factory=True, host=args.host, port=args.port, log_level="info")
    return 0
