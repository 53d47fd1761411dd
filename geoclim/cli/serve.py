"""``geoclim serve``: the HTTP forecast service (uvicorn), and API-key management.

Examples::

    geoclim serve runs/x/export/model.onnx --keys keys.json          # one file
    geoclim serve pm25_lstm --registry registry/ --keys keys.json    # registry name
    geoclim serve no2=a.onnx pm25=registry-name:3 --jwt-secret-env GEOCLIM_JWT_SECRET
    geoclim serve keygen alice --keys keys.json --models pm25_lstm   # prints the key once
    geoclim serve registry promote no2_lstm 3 --registry registry/   # or rollback, list

A model is ``[name=]<path.onnx | registry name | name:<version> | name@<stage>>``; the
first one is the default model of ``POST /v1/forecast``. Serving without ``--keys`` or a
JWT secret requires ``--no-auth`` (local use only). Logs are JSON lines on stderr.
Never imports torch, Lightning or Hydra.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from geoclim.cli.errors import friendly_errors
from geoclim.errors import ConfigError

log = logging.getLogger(__name__)


def _load_models(specs: list[str], registry: str | None, threads: int | None, max_missing: float):
    from geoclim.export.registry import ModelRegistry
    from geoclim.serving.adapter import Forecaster
    from geoclim.serving.app import ServedModel

    served = []
    for spec in specs:
        name, _, ref = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path, version = Path(ref), None
        if not (ref.endswith(".onnx") or path.is_file()):
            root = registry or os.environ.get("GEOCLIM_REGISTRY")
            if root is None:
                raise ConfigError(
                    f"model {ref!r} is not an .onnx file; to serve a registry "
                    "name pass --registry DIR (or set GEOCLIM_REGISTRY)"
                )
            mv = ModelRegistry(root).resolve(ref)
            path, version = Path(mv.path), str(mv.version)
            name = name or mv.name
        name = name or path.stem
        forecaster = Forecaster.from_onnx(path, name=name, threads=threads, max_missing=max_missing)
        served.append(ServedModel(name, forecaster, str(path), version))
    names = [m.name for m in served]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names {names} are not unique; name them with name=path")
    return served


def _build_app(args: argparse.Namespace):
    """Settings, models and the app from parsed arguments (in each worker process)."""
    from geoclim.serving.app import ServeSettings, create_app
    from geoclim.serving.security import JWTConfig, KeyStore

    keys = KeyStore.from_file(args.keys) if args.keys else None
    jwt = None
    if args.jwt_secret_env:
        secret = os.environ.get(args.jwt_secret_env)
        if not secret:
            raise ConfigError(
                f"--jwt-secret-env {args.jwt_secret_env}: that environment "
                "variable is empty or unset"
            )
        jwt = JWTConfig(secret, audience=args.jwt_audience, issuer=args.jwt_issuer)
    if keys is None and jwt is None and not args.no_auth:
        raise ConfigError(
            "no credentials configured: pass --keys FILE and/or "
            "--jwt-secret-env VAR, or --no-auth for local use only"
        )
    settings = ServeSettings(
        keys=keys,
        jwt=jwt,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_missing=args.max_missing,
    )
    models = _load_models(args.models, args.registry, args.threads, args.max_missing)
    return create_app(models, settings)


def app_factory():
    """Uvicorn factory for ``--workers > 1``: rebuilds the app from ``GEOCLIM_SERVE_ARGV``."""
    from geoclim.serving.observability import configure_logging

    args = build_parser().parse_args(json.loads(os.environ["GEOCLIM_SERVE_ARGV"]))
    configure_logging(args.log_level)
    return _build_app(args)


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    import uvicorn

    from geoclim.serving.observability import configure_logging

    app = _build_app(args)  # validates everything before any worker starts
    configure_logging(args.log_level)  # after argument errors, which print plainly
    options = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": 30,
    }
    if args.workers > 1:
        os.environ["GEOCLIM_SERVE_ARGV"] = json.dumps(argv)
        uvicorn.run("geoclim.cli.serve:app_factory", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(app, **options)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from geoclim.serving.security import KeyStore, Principal, generate_key

    path = Path(args.keys)
    store = KeyStore.from_file(path) if path.exists() else KeyStore()
    if args.key_id in store.entries and not args.replace:
        raise ConfigError(f"key id {args.key_id!r} exists in {path}; pass --replace to rotate")
    key = generate_key(args.key_id)
    store.add(
        key,
        Principal(args.key_id, tuple(args.models.split(",")), args.rate, args.burst),
        method=args.method,
    )
    store.to_file(path)
    print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim serve``."""
    p = argparse.ArgumentParser(
        prog="geoclim serve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Keys: geoclim serve keygen --help; registry: geoclim serve registry --help",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="[name=]path.onnx or registry reference (first = default)",
    )
    p.add_argument("--registry", help="registry directory (default $GEOCLIM_REGISTRY)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in containers)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--keys", help="API key file (hashes only; see geoclim serve keygen)")
    p.add_argument("--jwt-secret-env", help="environment variable holding the HS256 secret")
    p.add_argument("--jwt-audience")
    p.add_argument("--jwt-issuer")
    p.add_argument("--no-auth", action="store_true", help="serve without authentication")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="request size limit (413)")
    p.add_argument(
        "--max-missing",
        type=float,
        default=0.0,
        help="accepted fraction of missing inputs per variable (default 0)",
    )
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (rate limits then apply per worker)",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def build_keygen_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim serve keygen``."""
    p = argparse.ArgumentParser(
        prog="geoclim serve keygen", description="Create an API key: print it once, store its hash."
    )
    p.add_argument("key_id", help="key id (no '.'): the principal and rate-limit bucket")
    p.add_argument("--keys", required=True, help="key file to create or update")
    p.add_argument("--models", default="*", help="comma-separated model names, or *")
    p.add_argument("--rate", type=float, default=600.0, help="requests per minute")
    p.add_argument("--burst", type=int, default=60, help="requests at once")
    p.add_argument("--method", choices=["scrypt", "sha256"], default="scrypt")
    p.add_argument("--replace", action="store_true", help="rotate an existing key id")
    return p


def build_registry_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim serve registry``."""
    p = argparse.ArgumentParser(
        prog="geoclim serve registry", description="List, promote or roll back registered models."
    )
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("name", nargs="?", help="model name (promote, rollback)")
    p.add_argument("version", nargs="?", type=int, help="version to promote (default latest)")
    p.add_argument(
        "--registry",
        default=os.environ.get("GEOCLIM_REGISTRY"),
        help="registry directory (default $GEOCLIM_REGISTRY)",
    )
    return p


def _registry(args: argparse.Namespace) -> int:
    from geoclim.export.registry import ModelRegistry

    if not args.registry:
        raise ConfigError("pass --registry DIR (or set GEOCLIM_REGISTRY)")
    reg = ModelRegistry(args.registry)
    if args.action == "list":
        for mv in reg.list():
            print(f"{mv.name}:{mv.version}\t{mv.stage}\t{mv.created}\t{mv.path}")
        return 0
    if not args.name:
        raise ConfigError(f"registry {args.action} needs a model name")
    mv = (
        reg.promote(args.name, args.version)
        if args.action == "promote"
        else reg.rollback(args.name)
    )
    print(f"{mv.name}:{mv.version} is now {mv.stage}")
    return 0


@friendly_errors
def serve_main(argv: list[str] | None = None) -> int:
    """Entry point of ``geoclim serve ...`` (also ``keygen ...`` and ``registry ...``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["keygen"]:
        return _keygen(build_keygen_parser().parse_args(argv[1:]))
    if argv[:1] == ["registry"]:
        return _registry(build_registry_parser().parse_args(argv[1:]))
    return _serve(build_parser().parse_args(argv), argv)
