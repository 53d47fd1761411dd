import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _helm_lite():
    spec = importlib.util.spec_from_file_location(
        "helm_lite", Path(__file__).with_name("helm_lite.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def helm_lite():
    return _helm_lite()


@pytest.fixture(scope="session")
def chart_objects(helm_lite):
    return helm_lite.Chart(DEPLOY / "helm" / "geoclim").objects()


@pytest.fixture(scope="session")
def manifests():
    docs = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def by_kind(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}
