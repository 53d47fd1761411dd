"""The docs name modules and commands that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def _mermaid(text):
    return re.search(r"```mermaid\n(.*?)```", text, re.S).group(1)


@pytest.mark.parametrize(
    "module",
    [
        "data/canonical", "data/layout", "data/units", "data/timeaxis", "data/categorical",
        "data/folds", "data/quantiles", "data/normalize", "data/windows", "data/datamodule",
        "data/assemble", "data/inspect", "training/rundir", "training/predict",
        "evaluation/table", "evaluation/metrics", "evaluation/probabilistic",
        "evaluation/paired", "evaluation/regions", "evaluation/bootstrap", "evaluation/score",
        "evaluation/leaderboard", "evaluation/report", "export/onnx", "export/parity",
        "export/metadata", "export/registry", "serving/adapter", "serving/app",
        "serving/server", "serving/inputs", "serving/records", "serving/validity",
        "data/drift", "explain/captum", "explain/tree_shap", "explain/tft",
    ],
)  # fmt: skip
def test_diagram_names_every_module_of_the_data_path(module):
    package, name = module.split("/")
    assert (ROOT / "geoclim" / package / f"{name}.py").is_file(), module
    diagram = _mermaid(ARCHITECTURE)
    assert f"geoclim/{package}" in diagram and re.search(rf"\b{name}\b", diagram), module


def test_diagram_packages_exist():
    for package in re.findall(r"geoclim/(\w+)", _mermaid(ARCHITECTURE)):
        assert (ROOT / "geoclim" / package).is_dir(), package


def test_readme_tour_uses_options_that_exist():
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    choices = re.findall(r"\b(data|task|model)=([\w,]+)", tour)
    assert choices
    for group, options in choices:
        for option in options.split(","):
            assert (ROOT / "conf" / group / f"{option}.yaml").is_file(), (group, option)
    for doc in re.findall(r"docs/\w+\.md", tour):
        if doc != "docs/serving.md":  # arrives with the serving branch of this release
            assert (ROOT / doc).is_file(), doc
