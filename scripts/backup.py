#!/usr/bin/env python3
"""Back up and restore what the stack cannot rebuild: Redis (spend, budgets, decision log, cache, batch state),
batch files, Grafana, n8n's database, Qdrant's collections, and .env (with the n8n encryption key), in one dated
archive.

    python3 scripts/backup.py backup  --mode docker|local [--out DIR] [--redis-url URL] [--dry-run]
    python3 scripts/backup.py restore FILE --mode docker|local [--run-dir .run] [--dry-run]

Restore goes into a stopped stack (./deploy-all.sh down, or stop), in the order the stack needs: .env first
(the one it replaces is kept beside it), since Compose and Postgres read their passwords from it; Redis as an
append-only data directory (scripts/restore_redis.sh), because the stack's Redis runs with AOF on and would
ignore a bare snapshot; Grafana without the dashboards the repository provides; n8n's database once Postgres
answers. The n8n encryption key in .env must never be rotated: n8n's stored credentials are encrypted with
it, and a restore brings the old one back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARNING = ("keep this archive private: it holds .env (every secret). Never rotate N8N_ENCRYPTION_KEY: "
           "n8n's saved credentials cannot be decrypted without it.")


def sh(cmd: list[str], dry_run: bool, stdout=None, stdin=None) -> None:
    if dry_run:
        print("+ " + " ".join(cmd) + (f" > {stdout.name}" if getattr(stdout, "name", None) else "")
              + (f" < {stdin.name}" if stdin else ""))
        return
    subprocess.run(cmd, check=True, stdout=stdout, stdin=stdin, cwd=ROOT)


def backup(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_dir = Path(args.out).resolve()
    archive = out_dir / f"hybrid-ai-backup-{stamp}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="hai-backup-") as tmp:
        work = Path(tmp)
        contents = []
        if args.mode == "local":
            if not args.redis_url:
                raise SystemExit("error: local mode needs --redis-url (the gateway's REDIS_URL)")
            sh(["redis-cli", "-u", args.redis_url, "--no-auth-warning", "--rdb", str(work / "redis.rdb")],
               args.dry_run, stdout=subprocess.DEVNULL if not args.dry_run else None)
            contents.append("redis.rdb")
            batches = Path(args.run_dir) / "batches"
            if batches.is_dir():
                sh(["tar", "-C", str(batches), "-cf", str(work / "batches.tar"), "."], args.dry_run)
                contents.append("batches.tar")
        else:
            sh(["docker", "compose", "exec", "-T", "redis", "redis-cli", "--no-auth-warning", "--rdb",
                "/data/backup.rdb"], args.dry_run)
            sh(["docker", "compose", "cp", "redis:/data/backup.rdb", str(work / "redis.rdb")], args.dry_run)
            with open(work / "grafana.tar", "wb") as f:
                # ./dashboards is the repository's, mounted read-only: not data, and a restore cannot write it
                sh(["docker", "compose", "exec", "-T", "grafana", "tar", "-C", "/var/lib/grafana",
                    "--exclude=./dashboards", "-cf", "-", "."], args.dry_run, stdout=f)
            with open(work / "n8n.sql", "wb") as f:
                sh(["docker", "compose", "exec", "-T", "postgres", "pg_dump", "-U", "n8n", "-d", "n8n", "--clean"],
                   args.dry_run, stdout=f)
            with open(work / "qdrant.tar", "wb") as f:
                sh(["docker", "compose", "exec", "-T", "qdrant", "tar", "-C", "/qdrant/storage", "-cf", "-", "."],
                   args.dry_run, stdout=f)
            with open(work / "batches.tar", "wb") as f:  # batch files (their state is in Redis)
                sh(["docker", "compose", "exec", "-T", "api-gateway", "tar", "-C", "/data/batches", "-cf", "-", "."],
                   args.dry_run, stdout=f)
            contents += ["redis.rdb", "grafana.tar", "n8n.sql", "qdrant.tar", "batches.tar"]
        env = Path(args.env_file)
        if env.exists():
            shutil.copy2(env, work / ".env")
            contents.append(".env")
        (work / "manifest.json").write_text(json.dumps({"created": stamp, "mode": args.mode, "contents": contents}))
        if args.dry_run:
            print(f"+ tar czf {archive} {' '.join(contents)} manifest.json")
            return 0
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            for name in [*contents, "manifest.json"]:
                tar.add(work / name, arcname=name)
        os.chmod(archive, 0o600)
    print(f"backup written: {archive}\nwarning: {WARNING}")
    return 0


def restore(args: argparse.Namespace) -> int:
    archive = Path(args.file).resolve()
    if not archive.exists():
        raise SystemExit(f"error: {archive} does not exist")
    with tempfile.TemporaryDirectory(prefix="hai-restore-") as tmp:
        work = Path(tmp)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(work, filter="data")
        manifest = json.loads((work / "manifest.json").read_text())
        # .env first: Compose and Postgres take their passwords from it. The one it replaces stays beside it.
        if ".env" in manifest["contents"]:
            env_file = Path(args.env_file)
            kept = env_file.with_name(f"{env_file.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
            if args.dry_run:
                print(f"+ keep {env_file} as {kept.name}, then restore .env")
            else:
                if env_file.exists():
                    shutil.copy2(env_file, kept)
                    os.chmod(kept, 0o600)
                shutil.copy2(work / ".env", env_file)
                os.chmod(env_file, 0o600)
        if args.mode == "local":
            run_dir = Path(args.run_dir).resolve()
            pid = run_dir / "redis.pid"
            if pid.exists() and _alive(int(pid.read_text())):
                raise SystemExit("error: the local stack is running: ./deploy-all.sh stop first")
            sh(["sh", str(ROOT / "scripts" / "restore_redis.sh"), str(run_dir), str(work / "redis.rdb")],
               args.dry_run)
            if "batches.tar" in manifest["contents"]:
                (run_dir / "batches").mkdir(parents=True, exist_ok=True)
                sh(["tar", "-C", str(run_dir / "batches"), "-xf", str(work / "batches.tar")], args.dry_run)
        else:
            mount = f"{work}:/restore:ro"
            script = f"{ROOT / 'scripts' / 'restore_redis.sh'}:/restore_redis.sh:ro"
            sh(["docker", "compose", "run", "--rm", "--no-deps", "-v", mount, "-v", script, "--entrypoint", "sh",
                "redis", "/restore_redis.sh", "/data", "/restore/redis.rdb"], args.dry_run)
            if "grafana.tar" in manifest["contents"]:
                sh(["docker", "compose", "run", "--rm", "--no-deps", "-v", mount, "--entrypoint", "sh", "grafana",
                    "-c", "tar -C /var/lib/grafana --exclude=./dashboards -xf /restore/grafana.tar"], args.dry_run)
            if "qdrant.tar" in manifest["contents"]:
                sh(["docker", "compose", "run", "--rm", "--no-deps", "-v", mount, "--entrypoint", "sh", "qdrant",
                    "-c", "rm -rf /qdrant/storage/* && tar -C /qdrant/storage -xf /restore/qdrant.tar"], args.dry_run)
            if "batches.tar" in manifest["contents"]:
                sh(["docker", "compose", "run", "--rm", "--no-deps", "-v", mount, "--entrypoint", "sh", "api-gateway",
                    "-c", "tar -C /data/batches -xf /restore/batches.tar"], args.dry_run)
            if "n8n.sql" in manifest["contents"]:
                sh(["docker", "compose", "up", "-d", "--wait", "postgres"], args.dry_run)  # until pg_isready says so
                with open(work / "n8n.sql", "rb") as sql:
                    sh(["docker", "compose", "exec", "-T", "postgres", "psql", "-U", "n8n", "-d", "n8n", "-q"],
                       args.dry_run, stdin=sql)
    if args.dry_run:
        print(f"(dry run: nothing restored from {archive.name})")
        return 0
    print(f"restored {', '.join(manifest['contents'])} from {archive.name}; start the stack again "
          f"(./deploy-all.sh {'local' if args.mode == 'local' else 'docker'})\nwarning: {WARNING}")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--out", default=str(ROOT / "backups"))
    r = sub.add_parser("restore")
    r.add_argument("file")
    for p in (b, r):
        p.add_argument("--run-dir", default=str(ROOT / ".run"), help="local mode's run directory")
        p.add_argument("--mode", choices=("docker", "local"), default="docker")
        p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
        p.add_argument("--env-file", default=os.environ.get("BACKUP_ENV_FILE", str(ROOT / ".env")))
        p.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    try:
        return backup(args) if args.command == "backup" else restore(args)
    except subprocess.CalledProcessError as exc:  # one line that says what failed and what to try, no traceback
        other = "--local for local mode" if args.mode == "docker" else "without --local for the docker stack"
        print(f"error: {' '.join(map(str, exc.cmd[:4]))} ... failed (exit {exc.returncode}); is the "
              f"{args.mode} stack there? ({other})", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc.filename or exc}: not found", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
