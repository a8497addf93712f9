"""The floor under any Flask gateway: one JSON POST route that parses the body and answers a fixed JSON,
nothing else. scripts/bench/bench_gateway.py --floor serves it with the gateway's worker settings (gunicorn
gthread, same workers and threads), so the table shows how much of the gateway's cost is the framework
and the server rather than the gateway's own work."""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/api/v1/chat")
    def chat():
        body = request.get_json(force=True)
        return jsonify({"model": "tinyllama", "response": "Hello from the floor.", "prompt_chars": len(body["prompt"])})

    return app
