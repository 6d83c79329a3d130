"""The simulator's ASGI app: OpenAI-compatible chat completions plus control endpoints.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /stats``
(``?log=0`` leaves out ``requests_log``), ``POST /stats/reset``, ``POST /config``.
Everything runs on one event loop; the state below is only touched from it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import json
import logging
import re
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.tokens import estimate_message_tokens, estimate_tokens
from rlm_pipeline.sim.cheap import CheapModel
from rlm_pipeline.sim.config import SimConfig
from rlm_pipeline.sim.faults import FaultDraw, FaultInjector, malform, scramble_ids
from rlm_pipeline.sim.folds import answer_multi
from rlm_pipeline.sim.logprobs import token_logprobs
from rlm_pipeline.sim.protocols import check_grammar, render_root, root_protocol
from rlm_pipeline.sim.replies import (
    answer_confidences,
    completion,
    error_body,
    structured_value,
    tool_call_message,
)
from rlm_pipeline.sim.stats import SimStats
from rlm_pipeline.sim.strict import strict_refusal
from rlm_pipeline.sim.wire import Task, plan_task, requested_schema

__all__ = ["SimState", "build_app"]

logger = logging.getLogger(__name__)

_PLANNER_MODULE = "rlm_pipeline.sim.planner"
_JSON_SCHEMA_REJECTED = (
    "response_format: 1 validation error for ResponseFormat: type: Input should be 'text' "
    "or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]"
)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str, *, code: str | int | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, kind=kind, code=code, param=param)
        self.headers = headers or {}


class SimState:
    """Mutable state of one simulator app: config, counters, fault generator, slots."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats(config.max_log)
        self.faults = FaultInjector(config.seed)
        self.slots = asyncio.Semaphore(config.max_concurrency)
        self.ids = itertools.count(1)
        self.root_requests = 0
        self._planner: ModuleType | None = None

    def update(self, changes: dict[str, Any]) -> SimConfig:
        """Apply config ``changes`` (raises :class:`InputError` on bad ones)."""
        new = self.config.updated(changes)
        if "seed" in changes:
            self.faults.reseed(new.seed)
        if new.max_concurrency != self.config.max_concurrency:
            self.slots = asyncio.Semaphore(new.max_concurrency)
        self.stats.max_log = new.max_log
        self.config = new
        return new

    def planner(self) -> ModuleType:
        """The root-role planner module, imported on first use (HTTP 501 if absent)."""
        if self._planner is None:
            try:
                self._planner = importlib.import_module(_PLANNER_MODULE)
            except ModuleNotFoundError as exc:
                if exc.name != _PLANNER_MODULE:
                    raise
                msg = "the simulator's root planner (rlm_pipeline.sim.planner) is not installed"
                raise _HTTPError(501, msg, "not_implemented_error") from exc
        return self._planner


def build_app(config: SimConfig | None = None) -> Starlette:
    """The simulator as an ASGI app (serve it with uvicorn, or use :class:`SimServer`).

    Examples
    --------
    >>> app = build_app(SimConfig(latency_ms=10))
    >>> app.state.sim.config.latency_ms
    10
    """
    state = SimState(config or SimConfig())

    async def chat(request: Request) -> Response:
        return await _chat(state, request)

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "rlm_pipeline-sim"}
            for name in state.config.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def stats(request: Request) -> Response:
        log = request.query_params.get("log", "1") not in ("0", "false", "no")
        snapshot = state.stats.snapshot(log=log)
        snapshot["config"] = state.config.to_dict()
        return JSONResponse(snapshot)

    async def reset(request: Request) -> Response:
        state.stats.reset()
        return JSONResponse({"ok": True})

    async def configure(request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                msg = "POST /config takes a JSON object of settings"
                raise InputError(msg)
            if "retry_after_s" in changes or "models" in changes:
                changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
            new = state.update(changes)
        except (ValueError, InputError) as exc:
            return JSONResponse(error_body(str(exc), kind="invalid_request_error"), 400)
        return JSONResponse(new.to_dict())

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/stats/reset", reset, methods=["POST"]),
        Route("/config", configure, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app


async def _chat(state: SimState, request: Request) -> Response:
    stats = state.stats
    started = stats.begin()
    status, kind = 500, "unknown"
    model: str | None = None
    tokens_in = tokens_out = rows = 0
    try:
        cfg = state.config
        try:
            body = _check_request(cfg, request, await request.body())
            model = str(body.get("model") or "")
            stats.model_begin(model)
            task = plan_task(body)
            kind = task.kind + ("_tool" if task.tool_name else "")
            _check_response_format(cfg, body)
            _check_tools(cfg, body)
            draw = state.faults.draw(cfg)
            if draw.http == "429":
                stats.fault("429")
                after = f"{draw.retry_after_s:.3f}"
                raise _HTTPError(
                    429, "Rate limit reached (simulated)", "rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": after,
                             "retry-after-ms": str(int(draw.retry_after_s * 1000))},
                )
            slots = state.slots
            async with slots:
                stats.enter_active()
                try:
                    # The latency covers the work of answering, as a real server's does.
                    loop = asyncio.get_running_loop()
                    ready_at = loop.time() + cfg.latency_ms / 1000
                    if draw.http == "500":
                        await asyncio.sleep(max(0.0, ready_at - loop.time()))
                        stats.fault("500")
                        raise _HTTPError(500, "Internal server error (simulated)", "server_error")
                    if draw.http == "timeout":
                        stats.fault("timeout")
                        await asyncio.sleep(cfg.latency_ms / 1000 + cfg.timeout_delay_s)
                    reply, rows = await _answer(state, body, task, draw)
                    await asyncio.sleep(max(0.0, ready_at - loop.time()))
                finally:
                    stats.leave_active()
        except _HTTPError as exc:
            status = exc.status
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        tokens_in = reply["usage"]["prompt_tokens"]
        tokens_out = reply["usage"]["completion_tokens"]
        status = 200
        return JSONResponse(reply)
    except Exception as exc:  # a bug or a planner failure: answer 500, never hang
        logger.exception("simulator failed on a request")
        status = 500
        return JSONResponse(error_body(f"simulator error: {exc}", kind="server_error"), 500)
    finally:
        stats.finish(started, status, kind, input_tokens=tokens_in, output_tokens=tokens_out,
                     rows=rows)
        if model is not None:
            stats.model_end(model, status, tokens_in, tokens_out)


def _check_request(cfg: SimConfig, request: Request, raw: bytes) -> dict[str, Any]:
    if cfg.require_api_key is not None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {cfg.require_api_key}":
            raise _HTTPError(401, "Incorrect API key provided (simulated)",
                             "invalid_request_error", code="invalid_api_key")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _HTTPError(400, f"request body is not JSON: {exc}", "invalid_request_error") from exc
    if not isinstance(body, dict):
        raise _HTTPError(400, "request body must be a JSON object", "invalid_request_error")
    if cfg.strict_models and body.get("model") not in cfg.models:
        raise _HTTPError(404, f"The model `{body.get('model')}` does not exist (simulated)",
                         "invalid_request_error", code="model_not_found", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) for m in messages
    ):
        raise _HTTPError(400, "'messages' must be a non-empty list of objects",
                         "invalid_request_error", param="messages")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _HTTPError(400, "'tools' must be a list", "invalid_request_error", param="tools")
    if body.get("stream"):
        raise _HTTPError(400, "streaming is not supported by the simulator",
                         "invalid_request_error", param="stream")
    return body


def _check_response_format(cfg: SimConfig, body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is None or cfg.structured_mode == "json_schema":
        return
    if cfg.structured_mode == "strict":
        spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
        if isinstance(spec, dict) and spec.get("strict") is True:
            refusal = strict_refusal(spec.get("schema"), str(spec.get("name")))
            if refusal is not None:
                raise _HTTPError(400, refusal, "invalid_request_error", param="response_format")
        return
    if cfg.structured_mode == "text":
        raise _HTTPError(400, "response_format is not supported by this server (simulated)",
                         "invalid_request_error", param="response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object"):
        raise _HTTPError(500, _JSON_SCHEMA_REJECTED, "server_error", code=500)


def _check_tools(cfg: SimConfig, body: dict[str, Any]) -> None:
    """``tools`` refused (``tool_mode="rejected"`` / ``"rejected_500"``) and llama.cpp's grammar limits."""
    if cfg.tool_mode == "rejected" and (body.get("tools") or body.get("tool_choice")):
        raise _HTTPError(400, "tools and tool_choice are not supported by this server "
                         "(simulated)", "invalid_request_error", param="tools")
    if cfg.tool_mode == "rejected_500" and (body.get("tools") or body.get("tool_choice")):
        raise _HTTPError(500, "tools param requires --jinja flag (simulated)", "server_error",
                         code=500)
    if cfg.grammar_limit is not None:
        problem = check_grammar(body, cfg.grammar_limit)
        if problem is not None:
            raise _HTTPError(500, problem, "server_error", code=500)


async def _root_message(state: SimState, body: dict[str, Any]) -> Any:
    """The planner's reply to a root request, in the request's action protocol."""
    cfg = state.config
    state.root_requests += 1
    if cfg.fail_root_after is not None and state.root_requests > cfg.fail_root_after:
        raise _HTTPError(500, "Internal server error: the model server crashed (simulated)",
                         "server_error")
    protocol = root_protocol(body, cfg.tool_mode, requested_schema(body))
    # Only when asked: a planner swapped in by a test may take the body alone.
    options = {"several": True} if protocol == "text" and cfg.text_several else {}
    message = await _call_planner(state, "respond", body, **options)
    if not isinstance(message, dict):
        msg = "planner.respond must return an assistant message dict"
        raise TypeError(msg)
    turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
    return render_root(_normalise_message(message), protocol, cfg.text_style, turn)


async def _answer(
    state: SimState, body: dict[str, Any], task: Task, draw: FaultDraw
) -> tuple[dict[str, Any], int]:
    """The completion for ``task`` (with content faults applied) and its row count."""
    messages = body["messages"]
    rows = 0
    finish = "stop"
    confidences: list[float] = []  # of the classify answers, in reply order (for logprobs)
    if task.kind == "root":
        message = await _root_message(state, body)
    elif task.kind == "plain":
        text = await _call_planner(state, "respond_plain", body)
        message = {"role": "assistant", "content": str(text)}
    elif task.kind == "classify_plain":
        label, conf = _cheap(state.config).answer(task.text, task.labels)
        message = {"role": "assistant", "content": label}
        confidences = [conf]
        rows = 1
    else:
        multi = answer_multi(task, body)  # aggregate / top_k / join calls (sim/folds.py)
        cheap = _cheap(state.config)
        value, rows = multi if multi is not None else structured_value(task, cheap)
        confidences = answer_confidences(task, cheap)
        if draw.wrong_ids and task.kind.endswith("_batch"):
            state.stats.fault("wrong_ids")
            value["results"] = scramble_ids(value["results"], draw)
        content = json.dumps(value, ensure_ascii=False)
        if draw.malformed:
            state.stats.fault("malformed")
            content = malform(content)
        if task.tool_name is not None:
            call_id = f"call_sim_{next(state.ids)}"
            message = tool_call_message(task.tool_name, content, call_id)
        else:
            message = {"role": "assistant", "content": content}
    if message.get("tool_calls"):
        finish = "tool_calls"
    content = message.get("content")
    count = _word_tokens if state.config.token_count == "words" else estimate_tokens
    out_tokens = count(content) if isinstance(content, str) else 0
    if message.get("tool_calls"):
        out_tokens += count(json.dumps(message["tool_calls"], separators=(",", ":")))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and isinstance(content, str) and out_tokens > limit:
        message = {**message, "content": content[: limit * 4]}
        out_tokens = limit
        finish = "length"
    message.setdefault("refusal", None)
    reply = completion(
        completion_id=f"chatcmpl-sim-{next(state.ids)}",
        model=str(body.get("model") or "sim-1"),
        message=message,
        finish_reason=finish,
        prompt_tokens=_prompt_tokens(state, messages, body.get("tools")),
        completion_tokens=out_tokens,
    )
    content = message.get("content")
    if body.get("logprobs") is True and state.config.logprobs and isinstance(content, str):
        top = body.get("top_logprobs")
        tokens = token_logprobs(content, confidences, top=top if isinstance(top, int) else 0)
        reply["choices"][0]["logprobs"] = {"content": tokens, "refusal": None}
    cached = state.stats.prefix_cached(messages, lambda ms: _prompt_tokens(state, ms, None))
    reply["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}  # sim/stats.PrefixCache
    return reply, rows


_WORD = re.compile(r"\w+|[^\w\s]+")


def _cheap(cfg: SimConfig) -> CheapModel:
    """The classify answers' model under the config's ``accuracy`` / ``seed`` / ``confidence``."""
    return CheapModel(accuracy=cfg.accuracy, seed=cfg.seed, confidence=cfg.confidence)


def _word_tokens(text: str) -> int:
    """Words and runs of punctuation (``token_count="words"``): not the client's estimator."""
    return len(_WORD.findall(text))


def _prompt_tokens(state: SimState, messages: Any, tools: Any) -> int:
    """The prompt's ``usage`` tokens, counted as ``state.config.token_count`` says."""
    if state.config.token_count != "words":
        return estimate_message_tokens(messages, tools)
    texts = [json.dumps(m.get("content"), ensure_ascii=False) for m in messages]
    if tools:
        texts.append(json.dumps(tools, ensure_ascii=False))
    return sum(_word_tokens(text) + 4 for text in texts)


async def _call_planner(state: SimState, name: str, body: dict[str, Any], **options: Any) -> Any:
    function = getattr(state.planner(), name, None)
    if function is None:
        msg = f"the simulator's planner has no {name}()"
        raise _HTTPError(501, msg, "not_implemented_error")
    result = function(body, **options)
    if inspect.isawaitable(result):
        result = await result
    return result


def _normalise_message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    calls = message.get("tool_calls")
    if calls:
        fixed = []
        for number, call in enumerate(calls):
            function = dict(call.get("function") or {})
            arguments = function.get("arguments", "{}")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            fixed.append({
                "id": call.get("id") or f"call_sim_plan_{number}",
                "type": "function",
                "function": {"name": function.get("name", ""), "arguments": arguments},
            })
        out["tool_calls"] = fixed
    return out
