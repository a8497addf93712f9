"""Runs batches (POST /v1/batches) in the background of every worker, one worker per batch (a lease).

Each line of the input file is parsed and routed exactly like a POST /v1/chat/completions with the batch
owner's key: the same parser, the same router, the same dispatch, spend, stats and decision log. Then:
- lines the router keeps local (or sends to a paid model without a batch API) run here, a few at a time
  (BATCH_LOCAL_CONCURRENCY), so interactive traffic keeps the rest of the local capacity;
- lines for Claude go together as one Anthropic Message Batch, at half price: their worst case, at the batch
  price, is reserved against the budget when it is submitted and held until the results arrive (up to a
  day); each result is charged what the provider bills, at the batch price.
A line that cannot be parsed or routed, or that fails, goes to the error file with its line number and the
error in OpenAI's shape: never lost. Every finished line is logged (gateway/state/batches.py) before the
next, so a batch taken over after a restart resumes where it was; the Message Batch id is saved as soon as
it is submitted, so the cloud lines are never sent twice.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict

from flask import Flask, g

from .api.errors import openai_error_type
from .api.openai import _parse, completion_body
from .backends.base import BackendError
from .backends.prompt_cache import may_write
from .chat import Attempt, Completion, Outcome
from .errors import GatewayError, UpstreamError
from .service import CachePolicy, GatewayService
from .smart_router import Decision
from .state import StateUnavailable
from .state.batches import BatchStore
from .state.budget import Reservation

log = logging.getLogger("gateway.batches")
LEASE_SECONDS = 30         # renewed every 10 s while a worker works on a batch; a dead worker's lapses
WINDOW_SECONDS = 86_400    # completion_window "24h": a batch not done by then expires
PROVIDER_HOLD = 25 * 3600  # how long a Message Batch's reservation is held: the provider takes up to a day
ENDPOINT = "/v1/chat/completions"


class BatchRunner:
    def __init__(self, app: Flask, svc: GatewayService, store: BatchStore):
        self.app, self.svc, self.store = app, svc, store
        self.settings = svc.settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="batch-runner", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look at the batches now (one was created or cancelled)."""
        self.start()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad batch must not stop the others; the log has no prompt text
                log.exception("batch runner tick failed")
            self._wake.wait(self.settings.batch_poll_seconds)
            self._wake.clear()

    def tick(self) -> None:
        now = time.time()
        if now - self._swept > 600:
            self._swept = now
            self.store.sweep(now)
        for batch_id in self.store.records.active():
            if self._stop.is_set():
                return
            handle = self.store.records.lease(batch_id, LEASE_SECONDS)
            if handle is None:
                continue  # another worker has it
            beating = threading.Event()
            heart = threading.Thread(target=self._heartbeat, args=(handle, beating), daemon=True)
            heart.start()
            try:
                self.advance(batch_id)
            finally:
                beating.set()
                heart.join()
                self.store.records.release(handle)

    def _heartbeat(self, handle: object, stop: threading.Event) -> None:
        """Keep the lease while the batch is worked on, however long one line takes."""
        while not stop.wait(LEASE_SECONDS / 3):
            try:
                self.store.records.renew(handle, LEASE_SECONDS)
            except StateUnavailable:  # Redis away: the lease may lapse, and the worst is a line answered twice
                log.warning("batch lease not renewed")

    # ------------------------------------------------------------------ one batch
    def advance(self, batch_id: str) -> None:
        rec = self.store.batch(batch_id, None)
        if rec is None:
            return
        if rec["status"] == "validating":
            rec.update(status="in_progress", in_progress_at=int(time.time()))
            self.store.save(rec)
        try:
            lines = self._lines(rec)
        except FileNotFoundError:  # its input file was deleted (or expired) before the batch ran
            rec.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": [{
                "code": "input_file_missing", "message": "the input file was deleted before the batch ran",
                "param": "input_file_id", "line": None}]})
            self.store.save(rec)
            return
        rec["request_counts"]["total"] = len(lines)
        done = self.store.done_lines(batch_id)
        if rec["status"] == "cancelling":
            return self._cancel(rec, lines, done)
        if time.time() > rec["expires_at"] and (not rec.get("upstream") or rec.get("upstream_done")):
            return self._expire(rec, lines, done)
        if not rec.get("upstream"):
            self._submit_cloud(rec, lines, done)
        self._run_local(rec, lines, done)
        if rec.get("upstream") and not rec.get("upstream_done"):
            self._collect_cloud(rec, lines, done)
        if len(done) >= len(lines):
            self._finish(rec, lines, done, "completed")
        else:
            self._count(rec, done)
            self.store.save(rec)

    def _lines(self, rec: dict) -> list[str]:
        """The input file's non-blank lines (their line numbers kept: the error file names them)."""
        raw = self.store.file_path(rec["input_file_id"]).read_bytes().decode("utf-8", errors="replace")
        return raw.splitlines()

    def _plan(self, rec: dict, lines: list[str], done: dict) -> list[tuple]:
        """(line number, custom_id, request, decision) for every line still to run; a line that cannot be
        parsed or routed is finished at once as an error."""
        plan = []
        for n, raw in enumerate(lines, start=1):
            if n in done or not raw.strip() or str(n) in rec.get("cloud_lines", {}):
                if not raw.strip() and n not in done:
                    done[n] = {"line": n, "skip": True}
                continue
            custom_id = request_id = None
            try:
                custom_id, body = _line(raw, n)
                with self._context(rec, n) as request_id:
                    plan.append((n, custom_id, *self._request(body)))
            except GatewayError as exc:
                self._finish_line(rec["id"], done, _error_entry(n, custom_id, exc, request_id))
        return plan

    @contextmanager
    def _context(self, rec: dict, n: int) -> Iterator[str]:
        """A request context for one line, as if its owner had posted it to /v1/chat/completions."""
        with self.app.test_request_context(ENDPOINT, method="POST"):
            g.request_id = secrets.token_hex(16)
            g.api_key_id = rec["owner"] or None
            yield g.request_id

    def _request(self, body: dict):
        if not isinstance(body, dict):
            raise _LineError("body: should be a JSON object (a chat completion request)")
        if body.get("stream"):
            raise _LineError("body.stream: a batch line cannot stream")
        req, _, _ = _parse(body, self.svc)  # the surface's own parser: one path for every request
        return req, self.svc.decide(req)

    # ------------------------------------------------------------------ local lines
    def _run_local(self, rec: dict, lines: list[str], done: dict) -> None:
        plan = [p for p in self._plan(rec, lines, done) if not self._for_message_batch(p[3])]
        if not plan:
            return
        lock, saved = threading.Lock(), [time.monotonic()]

        def run(item):
            n, custom_id, req, decision = item
            if self._cancelled(rec["id"]):
                return
            with self._context(rec, n):
                try:  # not admitted against the key's per-minute limits: the batch's own pace is the bound
                    outcome = self.svc.complete(req, decision, CachePolicy())
                    entry = _ok_entry(n, custom_id, req.request_id, completion_body(f"chatcmpl-{req.request_id}",
                                                                                   outcome))
                except GatewayError as exc:
                    entry = _error_entry(n, custom_id, exc, req.request_id)
            self._finish_line(rec["id"], done, entry)
            with lock:
                if time.monotonic() - saved[0] >= 1:  # the counts a client polls, kept current once a second
                    saved[0] = time.monotonic()
                    self._count(rec, done)
                    self.store.save(rec)

        with ThreadPoolExecutor(self.settings.batch_local_concurrency, thread_name_prefix="batch-line") as pool:
            list(pool.map(run, plan))
        self._count(rec, done)

    def _cancelled(self, batch_id: str) -> bool:
        rec = self.store.batch(batch_id, None)
        return rec is None or rec["status"] == "cancelling"

    # ------------------------------------------------------------------ cloud lines: one Message Batch
    def _for_message_batch(self, decision: Decision) -> bool:
        model = self.settings.catalog.model(decision.model)
        return model is not None and model.paid and model.backend == "anthropic" and model.batch_discount > 0 \
            and "anthropic" in self.svc.upstreams.backends

    def _submit_cloud(self, rec: dict, lines: list[str], done: dict) -> None:
        plan = [p for p in self._plan(rec, lines, done) if self._for_message_batch(p[3])]
        if not plan:
            return
        backend = self.svc.upstreams.backends["anthropic"]
        requests, cloud, worst = [], {}, {}
        for n, custom_id, req, decision in plan:
            model = self.settings.catalog.model(decision.model)
            max_tokens = self.svc.dispatcher.max_tokens(req, model)
            entry, answer_tool = backend.batch_request(f"line-{n}", model, req, max_tokens)
            requests.append(entry)
            write = may_write(model, req, self.settings.anthropic.prompt_caching)
            worst[model.name] = worst.get(model.name, 0.0) + (1 - model.batch_discount) * model.worst_cost(
                req.input_tokens_bound, max_tokens, write)
            cloud[str(n)] = {"custom_id": custom_id, "request_id": req.request_id, "answer_tool": answer_tool,
                             "decision": _decision_dict(decision)}
        model = self.settings.catalog.model(plan[0][3].model)
        reservation = None
        try:  # the whole batch's worst case, at the batch price, held until its results are in
            reservation = self.svc.dispatcher.reserve(rec["owner"] or None, model, sum(worst.values()),
                                                      ttl=PROVIDER_HOLD)
            upstream = backend.submit_batch(requests)
        except (GatewayError, BackendError) as exc:
            if reservation is not None:
                self.svc.state.ledger.release(reservation)
            error = exc if isinstance(exc, GatewayError) else UpstreamError(f"the Message Batch was refused: "
                                                                           f"{exc.message}")
            for n, custom_id, req, _ in plan:
                self._finish_line(rec["id"], done, _error_entry(n, custom_id, error, req.request_id))
            return
        for _, _, _, decision in plan:
            self.svc.begin(decision)
        rec.update(upstream=upstream, cloud_lines=cloud,
                   reservation=asdict(reservation) if reservation is not None else None)
        self.store.save(rec)  # at once: a restart from here polls this batch, never submits the lines again

    def _collect_cloud(self, rec: dict, lines: list[str], done: dict) -> None:
        backend = self.svc.upstreams.backends.get("anthropic")
        try:
            if backend is None or not backend.batch_ended(rec["upstream"]):
                return
            cloud = rec["cloud_lines"]
            tools = {f"line-{n}": c["answer_tool"] for n, c in cloud.items() if c.get("answer_tool")}
            results = list(backend.batch_results(rec["upstream"], tools))
        except BackendError as exc:
            log.warning("message batch %s: %s", rec["upstream"], exc.message)
            return  # asked again next time
        for custom, result in results:
            n = custom.removeprefix("line-")
            line = cloud.get(n)
            if line is None or int(n) in done:
                continue
            self._settle_line(rec, int(n), line, lines[int(n) - 1], result, done)
        for n, line in cloud.items():  # a request the provider did not return: an error, never lost
            if int(n) not in done:
                self._finish_line(rec["id"], done, _error_entry(int(n), line["custom_id"], UpstreamError(
                    "the Message Batch returned no result for this line"), line["request_id"]))
        if rec.get("reservation"):
            self.svc.state.ledger.release(Reservation(**rec["reservation"]))
        rec["upstream_done"] = True
        self.store.save(rec)

    def _settle_line(self, rec: dict, n: int, line: dict, raw: str, result, done: dict) -> None:
        decision = Decision(**{**line["decision"], "exclusions": tuple(line["decision"]["exclusions"])})
        model = self.settings.catalog.model(decision.model)
        _, body = _line(raw, n)
        with self._context(rec, n):
            g.request_id = line["request_id"]
            req, _ = self._request(body)
            if isinstance(result, Completion):
                outcome = Outcome(line["request_id"], decision, model.name, model.backend, model.tier, result,
                                  cost=round(model.usage_cost(result.usage, batch=True), 8),
                                  attempts=[Attempt(model.name, model.backend, "ok")], reason=decision.reason,
                                  batch=True)
                with self.svc.state.batch():
                    self.svc.record(outcome, req)
                entry = _ok_entry(n, line["custom_id"], line["request_id"],
                                  completion_body(f"chatcmpl-{line['request_id']}", outcome))
            else:
                entry = _error_entry(n, line["custom_id"], UpstreamError(result.message), line["request_id"])
        self._finish_line(rec["id"], done, entry)

    # ------------------------------------------------------------------ endings
    def _finish_line(self, batch_id: str, done: dict, entry: dict) -> None:
        done[entry["line"]] = entry
        self.store.finish_line(batch_id, entry)

    def _cancel(self, rec: dict, lines: list[str], done: dict) -> None:
        backend = self.svc.upstreams.backends.get("anthropic")
        if rec.get("upstream") and not rec.get("upstream_done") and backend is not None:
            try:
                if not rec.get("upstream_cancelled"):
                    backend.cancel_batch(rec["upstream"])
                    rec["upstream_cancelled"] = True
                    self.store.save(rec)
            except BackendError as exc:
                log.warning("message batch %s: cancel failed: %s", rec["upstream"], exc.message)
            self._collect_cloud(rec, lines, done)  # what finished before the cancel is billed: keep it
            if not rec.get("upstream_done"):
                return  # the provider is still cancelling: its results (and the bill) come later
        self._end_unfinished(rec, lines, done, "batch_cancelled", "the batch was cancelled before this line ran")
        self._finish(rec, lines, done, "cancelled")

    def _expire(self, rec: dict, lines: list[str], done: dict) -> None:
        self._end_unfinished(rec, lines, done, "batch_expired", "the batch did not finish within its window")
        self._finish(rec, lines, done, "expired")

    def _end_unfinished(self, rec: dict, lines: list[str], done: dict, code: str, message: str) -> None:
        for n, raw in enumerate(lines, start=1):
            if n not in done and raw.strip():
                custom_id = _custom_id(raw)
                self._finish_line(rec["id"], done, {"line": n, "error": {
                    "id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id, "response": None,
                    "error": {"code": code, "message": message, "line": n}}})

    def _finish(self, rec: dict, lines: list[str], done: dict, status: str) -> None:
        ordered = [done[n] for n in sorted(done) if not done[n].get("skip")]
        ok = [json.dumps(e["output"]) for e in ordered if "output" in e]
        bad = [json.dumps(e["error"]) for e in ordered if "error" in e]
        now = int(time.time())
        rec.update(finalizing_at=rec.get("finalizing_at") or now)
        ttl = self.settings.batch_file_ttl_days * 86400
        if ok:
            rec["output_file_id"] = self.store.add_file(rec["owner"], f"{rec['id']}_output.jsonl", "batch_output",
                                                        ("\n".join(ok) + "\n").encode(), ttl)["id"]
        if bad:
            rec["error_file_id"] = self.store.add_file(rec["owner"], f"{rec['id']}_error.jsonl", "batch_output",
                                                       ("\n".join(bad) + "\n").encode(), ttl)["id"]
        self._count(rec, done)
        rec.update(status=status, **{f"{status}_at": now})
        self.store.save(rec)
        self.store.drop_work(rec["id"])
        self.store.records.delete("cancel", rec["id"])

    @staticmethod
    def _count(rec: dict, done: dict) -> None:
        finished = [e for e in done.values() if not e.get("skip")]
        rec["request_counts"].update(completed=sum("output" in e for e in finished),
                                     failed=sum("error" in e for e in finished))


class _LineError(GatewayError):
    status, type = 400, "invalid_batch_line"


def _line(raw: str, n: int) -> tuple[str | None, dict]:
    """(custom_id, body) of one input line: {custom_id, method: POST, url: /v1/chat/completions, body}."""
    try:
        item = json.loads(raw)
    except ValueError as exc:
        raise _LineError(f"line {n} is not valid JSON") from exc
    if not isinstance(item, dict):
        raise _LineError(f"line {n}: should be a JSON object {{custom_id, method, url, body}}")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _LineError(f"line {n}: custom_id is required (a string)")
    if item.get("method", "POST") != "POST" or item.get("url") != ENDPOINT:
        raise _LineError(f"line {n}: only method POST and url {ENDPOINT} are supported", custom_id=custom_id)
    return custom_id, item.get("body")


def _custom_id(raw: str) -> str | None:
    try:
        item = json.loads(raw)
    except ValueError:
        return None
    return item.get("custom_id") if isinstance(item, dict) and isinstance(item.get("custom_id"), str) else None


def _ok_entry(n: int, custom_id: str, request_id: str, body: dict) -> dict:
    return {"line": n, "output": {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                                  "response": {"status_code": 200, "request_id": request_id, "body": body},
                                  "error": None}}


def _error_entry(n: int, custom_id: str | None, exc: GatewayError, request_id: str | None) -> dict:
    """A failed line in OpenAI's error-file shape: a line that is not a request says so with its line number;
    a request that failed has the response it would have had."""
    custom_id = custom_id or exc.extra.get("custom_id")
    if isinstance(exc, _LineError):
        return {"line": n, "error": {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                                     "response": None,
                                     "error": {"code": exc.type, "message": exc.message, "line": n}}}
    body = {"error": {"message": exc.message, "type": openai_error_type(exc.status), "param": exc.extra.get("param"),
                      "code": exc.type}}
    return {"line": n, "error": {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                                 "response": {"status_code": exc.status, "request_id": request_id, "body": body},
                                 "error": None}}


def _decision_dict(decision: Decision) -> dict:
    d = {k: v for k, v in asdict(decision).items() if k != "alternatives"}
    d["exclusions"] = list(decision.exclusions)
    return d
