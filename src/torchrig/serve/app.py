"""The FastAPI application: routes, bearer-token auth, errors as JSON, the model's thread.

    GET  /healthz                 200 while the process runs (liveness)
    GET  /readyz                  200 once the model is loaded and warmed, else 503
    GET  /metrics                 Prometheus text (token required, like every /v1 route)
    GET  /v1/models               the one model served
    POST /v1/predict              classifiers: {"inputs": [text | base64 image, ...]}
    POST /v1/completions          causal LMs, OpenAI's shape (openai_api.py)
    POST /v1/chat/completions     causal LMs, OpenAI's shape

The model is used from one thread (an executor of one worker): a GPU model is not shared
between threads, and one generation at a time keeps each request's speed predictable.
Classifier requests are batched into that thread (batcher.py); LM requests wait their turn
in a bounded queue. Every error is `{"error": {"message", "type", "code"}}` with a 4xx
status for the client's mistakes and 500 "internal error" (details only in the server's
log) for ours: never a traceback on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from torchrig.errors import UsageError
from torchrig.serve import generate, openai_api
from torchrig.serve.batcher import DEFAULT_MAX_WAIT_MS, Batcher, Busy
from torchrig.serve.classifier import Classifier, InputError
from torchrig.serve.lm import LanguageModel
from torchrig.serve.metrics import Metrics
from torchrig.serve.sampling import Sampling

OPEN_PATHS = {"/healthz", "/readyz"}  # probes carry no token


@dataclass(frozen=True)
class Settings:
    token: str | None  # None: --no-auth
    max_tokens: int = 512  # the most new tokens one request may ask for
    max_inputs: int = 256  # inputs in one /v1/predict request
    max_batch: int = 32
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int = 1024
    overflow: generate.Overflow = "refuse"
    model_name: str = "model"
    cuda_graphs: bool = True  # a classifier on a GPU runs through CUDA graphs (serve/graphs.py)


@dataclass
class State:
    """What the routes share; `model` is set by the loader thread."""

    settings: Settings
    load: Callable[[], Classifier | LanguageModel]
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model")
    )
    model: Classifier | LanguageModel | None = None
    failed: str | None = None  # why loading failed (one line)
    failed_internal: bool = False  # a bug, not the input's fault
    batcher: Batcher | None = None
    waiting: int = 0  # LM requests queued or running
    on_failure: Callable[[], None] = lambda: None


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def _error(status: int, message: str, code: str, kind: str = "") -> JSONResponse:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "code": code}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid"))
    if not where and first.get("type") in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object (send Content-Type: application/json)"
    if first.get("type") == "missing":
        return f"the request has no {where!r} field" if where else "the request has no body"
    return f"{where}: {message}" if where else message


def _warm(model: Classifier | LanguageModel) -> None:
    """One real forward pass, so the first request does not pay for kernel selection and
    lazy initialisation; /readyz says ready only after it."""
    if isinstance(model, LanguageModel):
        ids = list(model.tokenizer("Hello")["input_ids"]) or [model.eos_id or 0]
        req = generate.Request(ids[: model.context - 2], 1, Sampling(0.0), seed=0)
        generate.complete(model, req)
    elif model.modality == "text":
        model.predict([model.prepare("warm-up")])
    else:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (127, 127, 127)).save(buffer, format="PNG")
        model.predict([model.prepare(buffer.getvalue())])


def _settle(model: Classifier | LanguageModel) -> None:
    """After the warm-up, before /readyz says ready: what a long-running server wants.

    - gc.freeze(): the loaded model, tokenizer and libraries are hundreds of thousands of
      objects that live as long as the server; moved out of the collector's generations,
      a full collection no longer walks them all, pausing every request in flight. (Under
      load on an H200, a quarter of the event loop's time was spent where the collector
      runs, in the frame that allocated.)
    - A GIL switch interval of 0.5 ms instead of 5: the model thread retakes the GIL after
      each torch call, and waits for the event loop to give it up.
    - On a GPU, one CPU thread for torch: the model's CPU work is a few small ops per call,
      for which waking a pool of threads costs more than it saves.
    Measured together with the 2 ms batch wait on an H200 (batched BERT-base, 32 clients):
    2,025 requests/s against 1,446 without the three and a 5 ms wait; the switch interval
    alone changed nothing measurable (1,420). benchmarks/results/serve-sweep-h200-2026-12-07.json
    """
    import gc

    if getattr(model.device, "type", "cpu") == "cuda":
        import torch

        torch.set_num_threads(1)
    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()


class AuthAndMetrics:
    """The bearer-token check and the request metrics, as a plain ASGI middleware.

    Starlette's @app.middleware("http") runs every request through an extra task and body
    stream. This change and uvloop/httptools together took a batched GPU classifier from 758
    to 1,031 requests/s (docs/serve.md). A request's latency is observed when its response
    has been sent (a stream's included)."""

    def __init__(self, app: Any, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        token = self.state.settings.token
        status = 500

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            if token is not None and path not in OPEN_PATHS and not _authorized(scope, token):
                await _error(
                    401,
                    "missing or wrong bearer token (send Authorization: Bearer TOKEN)",
                    "invalid_api_key",
                    "authentication_error",
                )(scope, receive, send_and_note)
                return
            await self.app(scope, receive, send_and_note)
        finally:
            self.state.metrics.observe(_endpoint(path), status, time.perf_counter() - start)


def _authorized(scope: Any, token: str) -> bool:
    given = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            given = value
    scheme, _, offered = given.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        offered.strip().encode(), token.encode()
    )


def create_app(state: State) -> FastAPI:
    settings = state.settings

    def load_in_background() -> None:
        try:
            model = state.load()
            if isinstance(model, Classifier) and model.device.type == "cuda":
                said = (
                    model.use_cuda_graphs(settings.max_batch)
                    if settings.cuda_graphs
                    else "CUDA graphs: off (--no-cuda-graphs)"
                )
                print(said, file=sys.stderr, flush=True)
            _warm(model)
            _settle(model)
        except UsageError as exc:  # the CLI reports it when the server has stopped
            state.failed = exc.one_line()
            state.on_failure()
            return
        except Exception as exc:
            state.failed = f"internal error while loading: {type(exc).__name__}: {exc}"
            state.failed_internal = True
            state.on_failure()
            return
        state.model = model
        state.metrics.ready.set(1)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.batcher = Batcher(
            lambda items: _predict_batch(state, items),
            state.executor,
            settings.max_batch,
            settings.max_wait_ms,
            settings.max_queue,
            on_batch=state.metrics.batch_size.observe,
        )
        state.batcher.start()
        loader = threading.Thread(target=load_in_background, name="load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            await state.batcher.stop()
            state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="torchrig serve", lifespan=lifespan, docs_url=None, redoc_url=None,
        openapi_url=None,
    )  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.code, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc), "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, str(exc.detail), code)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        print(
            f"internal error on {request.url.path}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return _error(500, "internal error (the server's log has the details)", "internal")

    app.add_middleware(AuthAndMetrics, state=state)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.model is not None:
            return JSONResponse({"ready": True, "model": settings.model_name})
        status = "failed: " + state.failed if state.failed else "loading"
        return JSONResponse({"ready": False, "status": status}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        state.metrics.queue.set(state.waiting + (state.batcher.depth() if state.batcher else 0))
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "torchrig"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        model = _ready(state)
        if not isinstance(model, Classifier):
            raise ApiError(
                404, "this server serves a causal LM: use /v1/completions", "wrong_endpoint"
            )
        body = await _json_object(request)
        raw = body.get("inputs")
        if not isinstance(raw, list) or not raw:
            raise ApiError(400, 'the body needs "inputs": a non-empty list', "invalid_request")
        if len(raw) > settings.max_inputs:
            raise ApiError(
                400,
                f"{len(raw)} inputs in one request; this server takes at most "
                f"{settings.max_inputs}",
                "too_many_inputs",
            )
        top_k = body.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ApiError(400, "top_k must be a positive integer", "invalid_request")
        items = [_decode_input(model, x, i) for i, x in enumerate(raw)]
        try:
            if model.modality == "text":  # a check of a string: a thread hop would cost more
                prepared = [model.prepare(x) for x in items]
            else:  # decoding images takes milliseconds each: off the event loop
                prepared = await asyncio.gather(
                    *(asyncio.to_thread(model.prepare, x) for x in items)
                )
        except InputError as exc:
            raise ApiError(400, exc.message, "invalid_input") from None
        assert state.batcher is not None
        try:
            if len(prepared) == 1:  # the common case: no task per input
                rows = [await state.batcher.submit(prepared[0])]
            else:
                rows = await asyncio.gather(*(state.batcher.submit(p) for p in prepared))
        except Busy:
            raise ApiError(503, "the server is busy (queue full): retry later", "busy") from None
        # A JSONResponse skips FastAPI's recursive encoder: the rows are plain JSON already.
        return JSONResponse(
            {"model": settings.model_name, "predictions": [_top(r, top_k) for r in rows]}
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(body: openai_api.CompletionRequest) -> Response | dict[str, Any]:
        lm = _lm(state)
        try:
            prompt = body.prompt_text()
        except ValueError as exc:
            raise ApiError(400, str(exc), "invalid_request") from None
        ids = [int(i) for i in lm.tokenizer(prompt)["input_ids"]]
        req = _gen_request(state, lm, body, ids, body.max_tokens)
        if body.stream:
            return _sse(state, lm, req, openai_api.ChunkMaker(settings.model_name, chat=False))
        result = await _run_lm(state, lm, req)
        text = prompt + result.text if body.echo else result.text
        used = openai_api.usage(result.prompt_tokens, result.completion_tokens)
        return openai_api.completion(settings.model_name, text, result.finish_reason, used)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: openai_api.ChatRequest) -> Response | dict[str, Any]:
        lm = _lm(state)
        ids = openai_api.chat_prompt(lm.tokenizer, body.messages)
        req = _gen_request(state, lm, body, ids, body.wanted_tokens())
        if body.stream:
            return _sse(state, lm, req, openai_api.ChunkMaker(settings.model_name, chat=True))
        result = await _run_lm(state, lm, req)
        used = openai_api.usage(result.prompt_tokens, result.completion_tokens)
        return openai_api.chat_completion(
            settings.model_name, result.text, result.finish_reason, used
        )

    return app


def _endpoint(path: str) -> str:
    """A bounded label: known routes by name, everything else as "other"."""
    known = {
        "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/predict", "/v1/completions",
        "/v1/chat/completions",
    }  # fmt: skip
    return path if path in known else "other"


def _ready(state: State) -> Classifier | LanguageModel:
    if state.model is None:
        if state.failed:
            raise ApiError(503, f"the model failed to load: {state.failed}", "not_ready")
        raise ApiError(
            503, "the model is still loading: retry when /readyz says ready", "not_ready"
        )
    return state.model


def _lm(state: State) -> LanguageModel:
    model = _ready(state)
    if not isinstance(model, LanguageModel):
        raise ApiError(404, "this server serves a classifier: use /v1/predict", "wrong_endpoint")
    return model


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request")
    return body


def _decode_input(model: Classifier, item: Any, index: int) -> Any:
    if model.modality == "text":
        if not isinstance(item, str):
            raise ApiError(400, f"inputs[{index}] must be a string", "invalid_input")
        return item
    if not isinstance(item, str):
        raise ApiError(400, f"inputs[{index}] must be a base64 string", "invalid_input")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"inputs[{index}] is not valid base64", "invalid_input") from None


def _predict_batch(state: State, items: Any) -> list[dict[str, Any]]:
    model = state.model
    assert isinstance(model, Classifier)
    return model.predict(list(items), top_k=len(model.labels))


def _top(row: dict[str, Any], k: int) -> dict[str, Any]:
    return {**row, "top_k": row["top_k"][:k]}


def _gen_request(
    state: State, lm: LanguageModel, body: Any, ids: list[int], wanted: int | None
) -> generate.Request:
    settings = state.settings
    if body.logprobs not in (None, False) or body.tools:
        raise ApiError(400, "logprobs and tools are not supported by this server", "unsupported")
    stops = body.stops()
    if len(stops) > openai_api.MAX_STOPS:
        raise ApiError(400, f"at most {openai_api.MAX_STOPS} stop strings", "invalid_request")
    if wanted is not None and wanted > settings.max_tokens:
        raise ApiError(
            400,
            f"max_tokens {wanted} is over this server's limit of {settings.max_tokens}",
            "max_tokens_too_large",
        )
    if wanted is None:  # the rest of the context, within the server's limit
        wanted = max(1, min(settings.max_tokens, lm.context - len(ids)))
    req = generate.Request(
        prompt_ids=ids,
        max_new_tokens=wanted,
        sampling=Sampling(body.temperature, body.top_p),
        stop=stops,
        seed=body.seed,
        overflow=settings.overflow,
    )
    try:
        req.sampling.check()
        generate.plan_lengths(lm, req)
    except generate.ContextError as exc:
        raise ApiError(400, exc.one_line(), "context_length_exceeded") from None
    except UsageError as exc:
        raise ApiError(400, exc.one_line(), "invalid_request") from None
    if state.waiting >= settings.max_queue:
        raise ApiError(503, "the server is busy (queue full): retry later", "busy")
    return req


def _count(state: State, result: generate.Result) -> None:
    state.metrics.tokens.inc(result.completion_tokens)
    state.metrics.tokens_per_s.set(result.tokens_per_s)


async def _run_lm(state: State, lm: LanguageModel, req: generate.Request) -> generate.Result:
    state.waiting += 1
    try:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(state.executor, generate.complete, lm, req)
    finally:
        state.waiting -= 1
    _count(state, result)
    return result


def _sse(
    state: State, lm: LanguageModel, req: generate.Request, chunks: openai_api.ChunkMaker
) -> StreamingResponse:
    """Server-sent events; the generation runs in the model's thread and stops when the
    client goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def work() -> None:
        gen = generate.stream(lm, req, cancelled.is_set)
        try:
            while True:
                try:
                    piece = next(gen)
                except StopIteration as stop:
                    loop.call_soon_threadsafe(queue.put_nowait, ("done", stop.value))
                    return
                loop.call_soon_threadsafe(queue.put_nowait, ("piece", piece))
        except Exception as exc:
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    def event(data: Any) -> bytes:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    async def body() -> AsyncIterator[bytes]:
        state.waiting += 1
        future = loop.run_in_executor(state.executor, work)
        try:
            first = chunks.first()
            if first is not None:
                yield event(first)
            while True:
                what, value = await queue.get()
                if what == "piece":
                    yield event(chunks.piece(value))
                elif what == "done":
                    _count(state, value)
                    used = openai_api.usage(value.prompt_tokens, value.completion_tokens)
                    yield event(chunks.last(value.finish_reason, used))
                    break
                else:
                    print(f"internal error while streaming: {value!r}", file=sys.stderr)
                    yield event({"error": {"message": "internal error", "type": "server_error"}})
                    break
            yield b"data: [DONE]\n\n"
        finally:
            cancelled.set()  # the model's thread stops at its next token
            state.waiting -= 1
            future.add_done_callback(lambda _: None)  # its end is not awaited: no request waits

    return StreamingResponse(body(), media_type="text/event-stream")
