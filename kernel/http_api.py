"""The kernel's OpenAI-compatible HTTP API, on loopback.

``/v1/models``, ``/v1/chat/completions`` (streaming and not) and
``/v1/embeddings``, plus ``/batos/v1/missions/ID/events`` (a mission's
events as server-sent events, for attached consoles). Every request needs
the bearer token. A chat request becomes a mission in the queue, so it runs
through the PSM and lands in the speaking mind's ledger like any other.

Protocol and behaviour are apart: ``Handler.handle_*`` parse and reply,
``Api.do_*`` do the work and return plain data.
"""
import base64
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from image.errors import ImageError
from mindhost import minds

from .logs import jsonable

log = logging.getLogger("batos.http")
WAIT = 600.0             # seconds a request waits for its mission


class ApiError(Exception):
    def __init__(self, status, message, type_="invalid_request_error", code=None):
        super().__init__(message)
        self.status, self.type, self.code = status, type_, code

    def body(self):
        return {"error": {"message": str(self), "type": self.type, "code": self.code}}


class Api:
    """What the endpoints do, given parsed requests."""

    def __init__(self, kernel):
        self.kernel = kernel

    def do_models(self):
        with self.kernel.img.view() as root:
            data = [{"id": k, "object": "model", "created": int(root["meta"].get("created", 0)),
                     "owned_by": "batos", "batos": {"role": root[k].role,
                                                    "generation": root[k].generation}}
                    for k in minds.MINDS]
        return {"object": "list", "data": data}

    def do_chat(self, mind, request, history, options):
        """Queue the mission; return ``(mission id, its events)``, whichever runner runs it."""
        mid = self.kernel.submit(mind, request, history=history, options=options, source="api")
        return mid, self.kernel.follow(mid, WAIT)

    def do_result(self, done, want_embedding):
        """The completed mission (its "done" event), with its answer's embedding if asked:
        the ledger packet's own vector, read from the image."""
        if not (want_embedding and done["exchanges"]):
            return done
        mind, key = done["exchanges"][-1]
        with self.kernel.img.view() as root:
            vec = root[mind].ledger[key].vector
        import numpy as np
        return done | {"embedding": np.frombuffer(vec, dtype="<f4").tolist()}

    def do_embed(self, texts):
        svc = self.kernel.services
        vecs = svc.embedder.encode(texts)       # serialised inside the embedder
        return vecs, svc.embedder.path.name

    def do_events(self, mid):
        """A mission's events until it ends, whichever runner runs it."""
        with self.kernel.img.view() as root:
            if root["missions"].get(mid) is None:
                raise ApiError(404, f"no mission {mid!r}", code="mission_not_found")
        return self.kernel.follow(mid, WAIT)


def parse_chat(body):
    """``(mind, request, history, options, stream, extras)`` from an OpenAI chat body."""
    mind = body.get("model")
    if mind not in minds.MINDS:
        raise ApiError(404, f"no model {mind!r}; the models are {', '.join(minds.MINDS)}",
                       code="model_not_found")
    turns, system = [], []
    for msg in body.get("messages") or []:
        role, content = msg.get("role"), msg.get("content")
        if isinstance(content, list):      # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ApiError(400, f"a {role} message has no text content")
        if role in ("system", "developer"):
            system.append(content)
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(400, "messages must end with a user message")
    options = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ApiError(400, "max_tokens must be a positive integer")
        options["max_tokens"] = max_tokens
    if body.get("temperature") is not None:
        options["temperature"] = float(body["temperature"])
    if system:
        options["system"] = "\n\n".join(system)
    extras = body.get("batos") or {}
    return mind, turns[-1]["content"], turns[:-1], options, bool(body.get("stream")), extras


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batos"
    api: Api = None
    token: str = None

    # -- routing --------------------------------------------------------------
    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def _route(self, method):
        started = time.perf_counter()
        try:
            self._authorize()
            path = self.path.split("?")[0].rstrip("/")
            if method == "GET" and path == "/v1/models":
                self.handle_models()
            elif method == "POST" and path == "/v1/chat/completions":
                self.handle_chat(self._body())
            elif method == "POST" and path == "/v1/embeddings":
                self.handle_embeddings(self._body())
            elif method == "GET" and path.startswith("/batos/v1/missions/") and path.endswith("/events"):
                self.handle_events(path.split("/")[4])
            else:
                raise ApiError(404, f"no endpoint {method} {path}", code="not_found")
        except ApiError as e:
            self._json(e.status, e.body())
        except (ImageError, ValueError) as e:
            self._json(400, ApiError(400, str(e)).body())
        except BrokenPipeError:
            pass
        except Exception as e:
            log.exception("request failed", extra={"event": "http_error", "path": self.path})
            self._json(500, ApiError(500, f"{type(e).__name__}: {e}", "server_error").body())
        log.info("%s %s", method, self.path, extra={
            "event": "http", "method": method, "path": self.path,
            "ms": round(1000 * (time.perf_counter() - started), 1)})

    def _authorize(self):
        given = self.headers.get("Authorization", "")
        if not (given.startswith("Bearer ") and
                hmac.compare_digest(given[7:].strip().encode(), self.token.encode())):
            raise ApiError(401, "a valid bearer token is required; print it with "
                                "`batos api-token`", code="invalid_api_key")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError as e:
            raise ApiError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    # -- replies ----------------------------------------------------------------
    def _json(self, status, data):
        raw = json.dumps(data, default=jsonable).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _sse(self, data):
        raw = ("data: " + (data if isinstance(data, str) else json.dumps(data, default=jsonable)) + "\n\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.flush()

    def _sse_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- endpoints ----------------------------------------------------------------
    def handle_models(self):
        self._json(200, self.api.do_models())

    def handle_embeddings(self, body):
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "input must be a string or a list of strings (token arrays "
                                "are not accepted)")
        vecs, name = self.api.do_embed(texts)
        b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if b64
                 else v.astype(float).tolist()} for i, v in enumerate(vecs)]
        n = sum(len(t.split()) for t in texts)
        self._json(200, {"object": "list", "data": data, "model": name,
                         "usage": {"prompt_tokens": n, "total_tokens": n}})

    def handle_chat(self, body):
        mind, request, history, options, stream, extras = parse_chat(body)
        mid, events = self.api.do_chat(mind, request, history, options)
        cid, created = f"chatcmpl-{mid}", int(time.time())
        want_embedding = bool(extras.get("embedding"))
        if not stream:
            for kind, data in events:
                if kind == "failed":
                    raise ApiError(500, f"the mission failed: {data}", "server_error")
                if kind == "stopped":
                    raise ApiError(503, data, "server_error")
                if kind == "done":
                    break
            else:
                raise ApiError(504, f"mission {mid} did not finish in {WAIT:.0f} s", "server_error")
            out = self.api.do_result(data, want_embedding)
            self._json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": mind,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out["answer"]},
                             "finish_reason": _finish(out, options)}],
                "usage": _usage(out), "batos": _extension(out)})
            return
        self._sse_start()
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": mind}
        self._sse(chunk | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}]})
        for kind, data in events:
            if kind == "token":
                self._sse(chunk | {"choices": [{"index": 0, "delta": {"content": data},
                                                "finish_reason": None}]})
            elif kind in ("failed", "stopped"):
                self._sse({"error": {"message": f"the mission {kind}: {data}",
                                     "type": "server_error", "code": kind}})
                break
            elif kind == "done":
                out = self.api.do_result(data, want_embedding)
                self._sse(chunk | {"choices": [{"index": 0, "delta": {},
                                                "finish_reason": _finish(out, options)}],
                                   "batos": _extension(out)})
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._sse(chunk | {"choices": [], "usage": _usage(out)})
                break
        self._sse("[DONE]")
        self._sse_end()

    def handle_events(self, mid):
        events = self.api.do_events(mid)
        self._sse_start()
        for kind, data in events:
            self._sse({"kind": kind, "data": data})
        self._sse("[DONE]")
        self._sse_end()

    def log_message(self, fmt, *args):    # our own structured line per request instead
        pass


def _usage(out):
    u = out.get("usage") or {}
    p, c = u.get("prompt_tokens", 0), u.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(out, options):
    u = out.get("usage") or {}
    cap = options.get("max_tokens")
    return "length" if cap and u.get("completion_tokens", 0) >= cap else "stop"


def _extension(out):
    ext = {"mission": out["id"], "speaker": out["speaker"], "routed_to": out["routed_to"],
           "exchange": out["exchanges"][-1][1] if out["exchanges"] else None}
    if "embedding" in out:
        ext["embedding"] = out["embedding"]
    return ext


def serve_http(kernel, host, port) -> ThreadingHTTPServer:
    """Serve the API on ``host:port`` in a thread; return the server."""
    handler = type("BoundHandler", (Handler,), {"api": Api(kernel), "token": kernel.token})
    try:
        server = ThreadingHTTPServer((host, int(port)), handler)
    except OSError as e:
        raise ImageError(f"cannot serve the HTTP API on {host}:{port} ({e.strerror}); choose "
                         "another address with `batos kernel --http HOST:PORT`") from e
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("HTTP API on http://%s:%s", *server.server_address[:2],
             extra={"event": "http_ready", "address": f"{host}:{server.server_address[1]}"})
    return server
