"""``geoclim serve``: the HTTP forecast service (uvicorn), and API-key management.

Examples::

    geoclim serve runs/x/export/model.onnx --keys keys.json          # one file
    geoclim serve pm25_lstm --registry registry/ --keys keys.json    # registry name
    geoclim serve no2=a.onnx pm25=registry-name:3 --jwt-secret-env GEOCLIM_JWT_SECRET
    geoclim serve keygen alice --keys keys.json --models pm25_lstm   # prints the key once
    geoclim serve registry promote no2_lstm 3 --registry registry/   # or rollback, list

A model is ``[name=]<path.onnx | registry name | name:<version> | name@<stage>>``; the
first one is the default model of ``POST /v1/forecast``. Serving without ``--keys`` or a
JWT secret requires ``--no-auth`` (local use only). Logs are JSON lines on stdout, or on a
size-rotated ``--log-file``. Every option also reads ``GEOCLIM_SERVE_<OPTION>`` from the
environment (``--header-timeout`` <- ``GEOCLIM_SERVE_HEADER_TIMEOUT``), which is how a
Kubernetes ConfigMap sets them; a command-line flag wins. Connection deadlines, the
connection cap and the SIGTERM drain: :mod:`geoclim.serving.server`.
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
            copied = Path(root) / mv.name / f"v{mv.version}" / "model.onnx"
            if not path.is_file() and copied.is_file():  # registry moved (image, volume)
                path = copied
            name = name or mv.name
        name = name or path.stem
        forecaster = Forecaster.from_onnx(path, name=name, threads=threads, max_missing=max_missing)
        served.append(ServedModel(name, forecaster, str(path), version))
    names = [m.name for m in served]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names {names} are not unique; name them with name=path")
    return served


def _secret_env(var: str | None, option: str) -> str | None:
    """The value of environment variable ``var`` (``None`` when ``var`` is not given)."""
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{option} {var}: that environment variable is empty or unset")
    return value


def _build_app(args: argparse.Namespace):
    """Settings, models and the app from parsed arguments (in each worker process)."""
    from geoclim.serving.app import ServeSettings, create_app
    from geoclim.serving.security import JWTConfig, KeyStore

    keys = KeyStore.from_file(args.keys) if args.keys else None
    jwt = None
    secret = _secret_env(args.jwt_secret_env, "--jwt-secret-env")
    if secret is not None:
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
        metrics_token=_secret_env(args.metrics_token_env, "--metrics-token-env"),
        drift_block=args.drift_block,
        freeze_heap=True,  # a server process: see ServeSettings
    )
    models = _load_models(args.models, args.registry, args.threads, args.max_missing)
    return create_app(models, settings)


def app_factory():
    """Uvicorn factory for ``--workers > 1``: rebuilds the app from ``GEOCLIM_SERVE_ARGV``."""
    from geoclim.serving.observability import configure_logging

    args = build_parser().parse_args(json.loads(os.environ["GEOCLIM_SERVE_ARGV"]))
    configure_logging(args.log_level)  # --log-file is refused with several workers
    return _build_app(args)


def _limits(args: argparse.Namespace):
    from geoclim.serving.server import ServerLimits

    return ServerLimits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
        drain_seconds=args.drain_seconds,
        graceful_timeout=args.graceful_timeout,
    )


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    from geoclim.serving import server
    from geoclim.serving.observability import configure_logging

    limits = _limits(args)
    if args.log_file and args.workers > 1:
        raise ConfigError(
            "--log-file with --workers > 1: several processes cannot rotate one file "
            "safely; log to stdout (the default) or run one worker"
        )
    app = _build_app(args)  # validates everything before any worker starts
    log_bytes = int(args.log_max_mb * 1024 * 1024)
    configure_logging(args.log_level, args.log_file, log_bytes, args.log_backups)  # after errors
    options = {"host": args.host, "port": args.port, "log_config": None, "access_log": False}
    if args.workers > 1:
        os.environ["GEOCLIM_SERVE_ARGV"] = json.dumps(argv)
        factory = "geoclim.cli.serve:app_factory"
        server.run(factory, limits, factory=True, workers=args.workers, **options)
    else:
        server.run(app, limits, **options)
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


def _env_default(option: str, default, kind=str):
    """``default``, or the value of ``GEOCLIM_SERVE_<OPTION>`` converted by ``kind``."""
    var = "GEOCLIM_SERVE_" + option.upper().replace("-", "_")
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return default
    if kind is bool:
        if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"{var}={raw!r}: expected true/false (1/0, yes/no)")
        return raw.lower() in ("1", "true", "yes")
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected {kind.__name__}") from None


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a value > 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a value >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim serve`` (defaults from ``GEOCLIM_SERVE_*`` when set)."""
    p = argparse.ArgumentParser(
        prog="geoclim serve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Every option also reads GEOCLIM_SERVE_<OPTION> (e.g. GEOCLIM_SERVE_PORT). "
        "Keys: geoclim serve keygen --help; registry: geoclim serve registry --help",
    )

    def add(option: str, default=None, kind=str, **kw):
        value = _env_default(option, default, kind)
        if kind is bool:
            p.add_argument(f"--{option}", action="store_true", default=value, **kw)
        else:
            p.add_argument(f"--{option}", type=kw.pop("type", kind), default=value, **kw)

    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="[name=]path.onnx or registry reference (first = default)",
    )
    add(
        "registry",
        os.environ.get("GEOCLIM_REGISTRY"),
        help="registry directory (or $GEOCLIM_REGISTRY)",
    )
    add("host", "127.0.0.1", help="bind address (0.0.0.0 in containers)")
    add("port", 8000, int, type=_positive(int), help="TCP port")
    add("keys", help="API key file (hashes only; see geoclim serve keygen)")
    add("jwt-secret-env", help="environment variable holding the HS256 secret")
    add("jwt-audience", help="required JWT audience")
    add("jwt-issuer", help="required JWT issuer")
    add("no-auth", False, bool, help="serve without authentication (local use only)")
    add(
        "metrics-token-env",
        help="environment variable holding a bearer token that /metrics then requires",
    )
    add("max-body-mb", 8.0, float, type=_positive(float), help="request size limit (413)")
    add(
        "max-missing",
        0.0,
        float,
        type=_non_negative,
        help="accepted fraction of missing inputs per variable and location; locations "
        "with more (or with no real past value) are masked: null forecast, valid false",
    )
    add(
        "drift-block",
        False,
        bool,
        help="refuse (422) requests whose inputs drift from the training data "
        "(> 1%% of values outside the training range, or a running PSI > 0.25) instead of "
        "answering with a warning",
    )
    add(
        "header-timeout",
        10.0,
        float,
        type=_positive(float),
        help="request line and headers must arrive within this (else 408)",
    )
    add(
        "body-timeout",
        30.0,
        float,
        type=_positive(float),
        help="the whole body must arrive within this after the headers (else 408)",
    )
    add(
        "keep-alive-timeout",
        5.0,
        float,
        type=_positive(float),
        help="idle time kept between requests on a connection",
    )
    add(
        "max-connections",
        1000,
        int,
        type=_positive(int),
        help="open connections per worker above which new ones get 503",
    )
    add(
        "drain-seconds",
        5.0,
        float,
        type=_non_negative,
        help="after SIGTERM: keep serving with /ready 503 and Connection: close for this long",
    )
    add(
        "graceful-timeout",
        30.0,
        float,
        type=_positive(float),
        help="after the drain: wait this long for in-flight requests, then cancel them",
    )
    add("threads", 1, int, type=_positive(int), help="onnxruntime intra-op threads")
    add(
        "workers",
        1,
        int,
        type=_positive(int),
        help="server worker processes, sharing connections evenly (rate limits and the "
        "connection cap then apply per worker)",
    )
    add("log-level", "INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")
    add("log-file", help="write JSON logs to this file, rotated by size, instead of stdout")
    add(
        "log-max-mb",
        50.0,
        float,
        type=_positive(float),
        help="with --log-file: rotate at this size",
    )
    add("log-backups", 5, int, type=_positive(int), help="with --log-file: rotated files kept")
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
