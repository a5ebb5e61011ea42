"""`POST /webhooks/shopify/{brand}`: Shopify's webhooks for a brand's Shopify source.

Outside `/api/`: Shopify signs its deliveries with the app's secret instead of a Bearer key. The
work is `shopify.webhooks`: signature first, the webhook id taken once, then a 200 within the
second while the pull it asks for runs in the background.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bspk_pipelines.api.deps import service_of
from bspk_pipelines.api.responses import error_response
from bspk_pipelines.shopify.webhooks import MAX_BODY_BYTES, Pulls, Refused, received, take_once, verified_source

PATH = "/webhooks/shopify/{brand}"


def router(pulls: Pulls) -> APIRouter:
    r = APIRouter()

    # Not in the OpenAPI document, which describes the Bearer-key API: Shopify is this route's one caller.
    @r.post(PATH, include_in_schema=False)
    async def shopify_webhook(brand: str, request: Request) -> JSONResponse:
        service = service_of(request)
        try:
            length = request.headers.get("content-length", "")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                raise Refused(413 if length.isdigit() else 411, f"a webhook body of at most {MAX_BODY_BYTES} bytes, "
                                                                "with its Content-Length")
            body = await request.body()
            source_id, source = verified_source(service.brands.get(brand), request.headers.get("x-shopify-shop-domain", ""),
                                                body, request.headers.get("x-shopify-hmac-sha256", ""))
            hook = received(brand, source_id, request.headers, body)
            new, action = await run_in_threadpool(take_once, service.engine, hook, source)
        except Refused as e:
            return error_response(e.status, str(e))
        if new and action.startswith("pull "):
            pulls.ask(hook)
        return JSONResponse({"taken": new, "duplicate": not new, "action": action})

    return r
