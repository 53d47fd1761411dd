"""The deployment files against the real app: probes, ports, PromQL names, image contents."""

import json
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from geoclim.cli.serve import build_parser
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, create_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
PROMETHEUS_SERIES = {"up": {"job", "instance"}}  # made by Prometheus itself, per target
TARGET_LABELS = {"job", "instance", "namespace", "pod"}  # added by the scrape
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@pytest.fixture(scope="module")
def app(station_export):
    f = Forecaster.from_onnx(station_export.path, name="st")
    return create_app([ServedModel("st", f, str(station_export.path))])


@pytest.fixture(scope="module")
def exported(app):
    """Sample name -> label names, for every series the service's /metrics exposes."""
    with TestClient(app) as client:
        text = client.get("/metrics").text
    labels = {
        m._name: set(m._labelnames)
        for m in vars(app.state.metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    names = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            base = family.name.removesuffix("_created")  # the counters' creation-time gauges
            # metrics outside app.state.metrics (the drift gauges): the labels they export
            seen = {k for sample in family.samples for k in sample.labels} - {"le"}
            names[family.name + suffix] = labels.get(base, seen) | extra
    return names


def deployment():
    docs = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    return docs["spec"]["template"]["spec"]["containers"][0]


def test_probes_hit_routes_of_the_app_on_the_served_port(app):
    container = deployment()
    routes = {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, (probe, get["path"])
        assert get["port"] in ports
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    assert int(config["GEOCLIM_SERVE_PORT"]) == ports["http"] == build_parser().get_default("port")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200


def test_the_configmap_sets_only_real_serve_options():
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    options = {a.dest for a in build_parser()._actions}
    for var in config:
        if var == "GEOCLIM_REGISTRY":
            continue
        assert var.startswith("GEOCLIM_SERVE_") and var[14:].lower() in options, var
    args = build_parser().parse_args(deployment()["args"])  # env defaults need no flags
    assert args.models == ["no2_lstm"]


def promql_expressions():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "geoclim.json").read_text())
    for panel in dash["panels"]:
        for target in panel["targets"]:
            yield f"dashboard: {panel['title']}", target["expr"]
    var = dash["templating"]["list"][0]["query"]["query"]
    yield "dashboard variable", re.sub(r"^label_values\((\w+), \w+\)$", r"\1", var)
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    for rule in adapter["rules"]["custom"]:
        series = rule["seriesQuery"]
        yield "adapter seriesQuery", series
        name = re.match(r"\w+", series).group(0)
        query = rule["metricsQuery"].replace("<<.Series>>", name)
        yield (
            "adapter metricsQuery",
            query.replace("<<.LabelMatchers>>", "").replace("<<.GroupBy>>", "pod"),
        )


def metric_names(expr):
    """Metric names and the label names an expression uses (a small PromQL lexer)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in clause.split(",") if x.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    names = {
        m.group(1)
        for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)\s*(\()?", expr)
        if not m.group(2) and m.group(1) not in PROMQL_WORDS
    }
    return names, labels


def test_the_lexer_finds_names_and_labels():
    names, labels = metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{job=~"$job"}[5m]))) '
        "/ on (pod) b_total > 0.25 and up == 0"
    )
    assert names == {"a_bucket", "b_total", "up"}
    assert labels == {"le", "route", "job", "pod"}


def test_every_promql_expression_names_exported_metrics_and_labels(exported):
    known = exported | PROMETHEUS_SERIES
    checked = 0
    for where, expr in promql_expressions():
        names, labels = metric_names(expr)
        assert names, (where, expr)
        missing = names - set(known)
        assert not missing, f"{where}: {sorted(missing)} not in /metrics ({expr})"
        have = set().union(*(known[n] for n in names)) | TARGET_LABELS
        assert labels <= have, f"{where}: labels {sorted(labels - have)} unknown ({expr})"
        checked += 1
    assert checked >= 20


def test_a_misspelt_metric_would_be_caught(exported):
    names, _ = metric_names("sum(rate(geoclim_http_request_total[5m]))")
    assert names - set(exported) == {"geoclim_http_request_total"}


def test_the_image_requirements_cover_what_serving_imports(fresh_serving_process):
    import importlib.metadata as md

    imported = set()
    for path in fresh_serving_process["files"]:
        tree = Path(path).read_text()
        imported |= set(re.findall(r"^\s*(?:from|import) ([A-Za-z_]\w*)", tree, re.M))
    dists = md.packages_distributions()
    third_party = {
        d.lower().replace("_", "-")
        for top in imported
        for d in dists.get(top, [])
        if d != "geoclim"
    }
    third_party -= {"torch", "lightning", "hydra-core", "omegaconf"}  # behind TYPE_CHECKING
    required = set()
    for line in (DEPLOY / "requirements-serve.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            required.add(re.split(r"[=<>\[]", line)[0].lower())
    assert third_party <= required, sorted(third_party - required)
