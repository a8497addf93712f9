"""Operator CLI: `python -m gateway route "prompt" [--explain] [--strategy S] [--model M]`,
`python -m gateway check`: is the configuration valid (what ./deploy-all.sh reload asks before reloading)?,
and `python -m gateway calibration status|refit|rollback [--to VERSION]|resume`: the learning router's
versions in Redis (gateway/calibration/), which every worker and replica follows within seconds.

Prints the routing decision and its alternatives (a dry run) without a server and without calling
any model, using the same configuration the gateway would: the environment, then the stack's .env (read
as ./deploy-all.sh reads it, so the CLI and the server agree on ROUTER, DEPLOYMENT_TIER, the keys that
make backends available...), then MODELS_CONFIG. --env-file names another file, --env-file "" none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .catalog import CatalogError
from .chat import STRATEGIES, ChatRequest, Message
from .config import ConfigError, Settings
from .errors import GatewayError
from .smart_router import RoutingContext, decide


def _environment(env_file: str) -> dict[str, str]:
    """The environment over the .env file's values, as deploy-all.sh and Compose give them to the server.
    The file is parsed by scripts/envfile.py (Compose's rules), present in a checkout; the gateway's image
    has no .env, its environment is already the server's."""
    path = Path(env_file) if env_file else None
    if path is None or not path.is_file():
        return dict(os.environ)
    try:
        from scripts.envfile import parse
    except ImportError:
        print(f"note: {path} not read (scripts/envfile.py not found): the environment alone", file=sys.stderr)
        return dict(os.environ)
    return {**parse(path.read_text(encoding="utf-8"), os.environ), **os.environ}


def _route(args: argparse.Namespace) -> int:
    settings = Settings.from_env(_environment(args.env_file))
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    request = ChatRequest(messages=(Message("user", prompt),), model=args.model, strategy=args.strategy,
                          max_tokens=args.max_tokens)
    context = RoutingContext(settings.catalog, settings.configured_backends, settings.deployment_tier,
                             settings.routing_strategy, router=settings.router, learned=settings.learned,
                             paid_fallback=settings.paid_fallback)
    try:
        d = decide(request, context)
    except GatewayError as exc:
        print(f"error ({exc.status} {exc.type}): {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"model": d.model, "backend": d.backend, "tier": d.tier, "complexity": d.score,
                          "strategy": d.strategy, "reason": d.reason, "factors": d.factors,
                          "estimated_cost": d.estimated_cost,
                          "alternatives": [c.as_dict() for c in d.alternatives]}, indent=2))
        return 0
    print(f"model: {d.model} ({d.backend}, tier {d.tier})")
    print(f"complexity: {d.score:.4f}  strategy: {d.strategy}")
    print(f"reason: {d.reason}")
    print(f"estimated cost: ${d.estimated_cost:.6f}")
    if args.explain:
        weights = settings.catalog.routing.weights
        print(f"router: {settings.router}" + (f" (weights {settings.learned.version})" if settings.learned else ""))
        print("factors (value x weight):")
        for name, value in d.factors.items():
            if name in weights:
                print(f"  {name:<10} {value:.4f} x {weights[name]:.2f} = {value * weights[name]:.4f}")
            else:  # the learned router's score, and in hybrid the heuristic's total
                print(f"  {name:<10} {value:.4f}")
        print("fallbacks, in order:")
        for c in d.alternatives or ():
            print(f"  {c.model} ({c.backend}, tier {c.tier}) ~${c.estimated_cost:.6f}")
        if not d.alternatives:
            print("  none")
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = Settings.from_env(_environment(args.env_file))
    print(f"configuration ok: {len(settings.catalog.models)} models in {settings.models_config}, "
          f"router {settings.router}, deployment tier {settings.deployment_tier}")
    return 0


def _calibration(args: argparse.Namespace) -> int:
    from .calibration.runtime import Calibrator
    from .state import StateUnavailable, build_state

    settings = Settings.from_env(_environment(args.env_file))
    if not settings.redis_url:
        print("error: the calibration lives in Redis (REDIS_URL); without it each gateway process keeps its own",
              file=sys.stderr)
        return 2
    state = build_state(settings)
    calibrator = Calibrator(settings, state)
    try:
        if args.action == "rollback":
            result = calibrator.rollback(args.to)
            print(f"rolled back to {result['version']} (from {result['from'] or 'shipped'}); refits held until "
                  "`python -m gateway calibration resume`")
        elif args.action == "resume":
            print(f"refits resumed; in force: {calibrator.resume()['version']}")
        elif args.action == "refit":
            done = calibrator.refit(force=True)
            print(f"published {done['version']} from {done['labels']} labels in {done['seconds']} s" if done
                  else "nothing to refit: no labels yet (or another refit is running)")
        else:
            calibrator.refresh()
            print(json.dumps(calibrator.report(), indent=2))
    except StateUnavailable as exc:
        print(f"error: Redis did not answer ({exc})", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        state.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    route = sub.add_parser("route", help="print the routing decision for a prompt (dry run)")
    route.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    route.add_argument("--explain", action="store_true", help="show each factor and the fallback chain")
    route.add_argument("--strategy", choices=STRATEGIES, default=None)
    route.add_argument("--model", default="auto", help="auto, a tier or a model name")
    route.add_argument("--max-tokens", type=int, default=None)
    route.add_argument("--json", action="store_true", help="machine-readable output")
    route.add_argument("--env-file", default=".env", help="the stack's settings (default .env; \"\" for none)")
    check = sub.add_parser("check", help="validate the configuration the gateway would start with")
    check.add_argument("--env-file", default=".env", help="the stack's settings (default .env; \"\" for none)")
    cal = sub.add_parser("calibration", help="the learning router: status, refit, rollback, resume")
    cal.add_argument("action", choices=("status", "refit", "rollback", "resume"))
    cal.add_argument("--to", default=None, help="rollback: this version (from status' history), or 'shipped'")
    cal.add_argument("--env-file", default=".env", help="the stack's settings (default .env; \"\" for none)")
    args = parser.parse_args(argv)
    try:
        return {"check": _check, "route": _route, "calibration": _calibration}[args.command](args)
    except (ConfigError, CatalogError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
