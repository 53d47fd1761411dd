import copy
import re

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT, by_kind

K8S_VERSION = kubernetes_validate.latest_version()
KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "PodDisruptionBudget",
    "Secret",
    "Service",
}


def test_the_plain_manifests_are_the_rendered_chart(chart_objects, manifests):
    assert by_kind(manifests) == by_kind(chart_objects)
    assert {o["kind"] for o in manifests} == KINDS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_manifest_is_valid_against_the_kubernetes_schema(manifests, kind):
    (obj,) = [o for o in manifests if o["kind"] == kind]
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_caught_by_the_schema(manifests):
    (deployment,) = [o for o in manifests if o["kind"] == "Deployment"]
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_chart_values_reach_the_objects(helm_lite):
    chart = helm_lite.Chart(
        DEPLOY / "helm" / "geoclim",
        release="aq",
        values={"port": 9000, "models": ["a", "b:2"], "autoscaling": {"maxReplicas": 3}},
    )
    objs = by_kind(chart.objects())
    pod = objs["Deployment", "aq"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["a", "b:2"]
    assert container["ports"][0]["containerPort"] == 9000
    assert objs["ConfigMap", "aq-settings"]["data"]["GEOCLIM_SERVE_PORT"] == "9000"
    assert objs["HorizontalPodAutoscaler", "aq"]["spec"]["maxReplicas"] == 3
    assert objs["HorizontalPodAutoscaler", "aq"]["spec"]["minReplicas"] == 2
    for obj in objs.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_renderer_refuses_templates_outside_its_subset(helm_lite, tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("name: x\nversion: 1.0.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("a: 1\n")
    (tmp_path / "templates" / "x.yaml").write_text("a: {{ .Values.a | b64enc }}\n")
    with pytest.raises(ValueError, match="b64enc"):
        helm_lite.Chart(tmp_path).render()
    (tmp_path / "templates" / "x.yaml").write_text("a: {{ .Values.missing }}\n")
    with pytest.raises(KeyError, match="missing"):
        helm_lite.Chart(tmp_path).render()


def test_the_pod_is_hardened(manifests):
    (deployment,) = [o for o in manifests if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "memory" in c["resources"]["limits"] and "cpu" in c["resources"]["requests"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the only writable place
    assert volumes[mounts["/secrets"]]["secret"]["secretName"] == "geoclim-keys"
    assert "replicas" not in deployment["spec"]  # owned by the autoscaler


def test_shutdown_timing_fits_the_grace_period(manifests):
    objs = {o["kind"]: o for o in manifests}
    settings = objs["ConfigMap"]["data"]
    grace = objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(settings["GEOCLIM_SERVE_DRAIN_SECONDS"])
    assert drain + float(settings["GEOCLIM_SERVE_GRACEFUL_TIMEOUT"]) < grace
    # idle keep-alive connections time out during the drain instead of being cut after it
    assert float(settings["GEOCLIM_SERVE_KEEP_ALIVE_TIMEOUT"]) <= drain
    readiness = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    # the drain must outlast the probe's detection, or traffic still arrives after it
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < drain


def test_autoscaler_and_disruption_budget_target_the_deployment(manifests):
    objs = {o["kind"]: o for o in manifests}
    hpa, pdb, dep = objs["HorizontalPodAutoscaler"], objs["PodDisruptionBudget"], objs["Deployment"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    rate = kinds["Pods"]["pods"]["metric"]["name"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    assert rate in [r["name"]["as"] for r in rules["rules"]["custom"]]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert objs["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_ingress_body_limit_matches_the_service_limit(manifests):
    objs = {o["kind"]: o for o in manifests}
    size = objs["Ingress"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size == f"{int(float(objs['ConfigMap']['data']['GEOCLIM_SERVE_MAX_BODY_MB']))}m"
    backend = objs["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": objs["Service"]["metadata"]["name"], "port": {"name": "http"}}


def test_the_dockerfile_serves_on_the_manifests_port(manifests):
    docker = (ROOT / "Dockerfile").read_text()
    (dep,) = [o for o in manifests if o["kind"] == "Deployment"]
    port = dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert re.search(rf"^EXPOSE {port}$", docker, re.M)
    assert re.search(rf"GEOCLIM_SERVE_PORT={port}\b", docker)
    assert re.search(r"^USER 10001$", docker, re.M)  # the pod's runAsUser
