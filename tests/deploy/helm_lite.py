"""A tiny renderer for the plain subset of Helm's templates that deploy/helm/geoclim uses.

helm is not installable from the package registries here, so the tests render the chart
with this instead and compare the result with deploy/k8s/. Supported, with Helm's
semantics: ``{{- ... -}}`` whitespace trimming, ``{{/* comments */}}``, ``define`` /
``include``, ``if`` / ``else`` / ``end``, fields of ``.Values`` / ``.Release`` / ``.Chart``,
string literals, and the functions ``quote``, ``toYaml``, ``nindent N``, ``indent N``. Anything
else raises, so a template that leaves the subset fails the tests instead of rendering wrong.

    python tests/deploy/helm_lite.py deploy/helm/geoclim   # the chart as one YAML stream
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s), applying ``{{-`` / ``-}}`` trimming."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(text):
        lead = m.group(1) if not m.group(2) else ""
        chunk = text[pos : m.start()] + lead
        if trim_next:
            chunk = chunk.lstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(3)))
        pos, trim_next = m.end(), bool(m.group(4))
    rest = text[pos:]
    out.append(("text", rest.lstrip() if trim_next else rest))
    return out


def _tree(tokens: list[tuple[str, str]], defines: dict[str, list]) -> list:
    """Nest ``if`` / ``else`` / ``define`` blocks; store defines; return the top-level nodes."""
    root: list = []
    stack: list[tuple[str, Any, list]] = [("root", None, root)]
    for kind, value in tokens:
        if kind == "text":
            stack[-1][2].append(("text", value))
            continue
        if value.startswith("/*"):
            continue
        word = value.split(None, 1)[0]
        if word in ("if", "define"):
            node: list = []
            stack.append((word, value.split(None, 1)[1], node))
        elif word == "else":
            _, cond, node = stack[-1]
            stack[-1] = ("else", (cond, node), [])
        elif word == "end":
            kind_, arg, node = stack.pop()
            if kind_ == "define":
                defines[json.loads(arg)] = node
            elif kind_ == "if":
                stack[-1][2].append(("if", arg, node, []))
            elif kind_ == "else":
                cond, then = arg
                stack[-1][2].append(("if", cond, then, node))
            else:
                raise ValueError("unbalanced {{ end }}")
        else:
            stack[-1][2].append(("expr", value))
    if len(stack) != 1:
        raise ValueError(f"unclosed {{{{ {stack[-1][0]} }}}}")
    return root


class Chart:
    """A chart directory: its Chart.yaml, values.yaml and templates."""

    def __init__(self, path: str | Path, release: str = "geoclim", values: dict | None = None):
        self.path = Path(path)
        meta = yaml.safe_load((self.path / "Chart.yaml").read_text())
        defaults = yaml.safe_load((self.path / "values.yaml").read_text())
        self.context = {
            "Values": _merge(defaults, values or {}),
            "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
            "Chart": {
                "Name": meta["name"],
                "Version": meta["version"],
                "AppVersion": meta["appVersion"],
            },
        }
        self.defines: dict[str, list] = {}
        self.templates: dict[str, list] = {}
        for f in sorted((self.path / "templates").glob("*")):
            tree = _tree(_tokens(f.read_text()), self.defines)
            if not f.name.startswith("_"):
                self.templates[f.name] = tree

    def render(self) -> dict[str, str]:
        """Template file name -> rendered text."""
        return {name: self._run(tree) for name, tree in self.templates.items()}

    def objects(self) -> list[dict]:
        """Every rendered Kubernetes object."""
        docs = []
        for text in self.render().values():
            docs += [d for d in yaml.safe_load_all(text) if d]
        return docs

    def _run(self, nodes: list) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                out.append(_text(self._pipeline(node[1])))
            else:
                _, cond, then, other = node
                out.append(self._run(then if self._pipeline(cond) else other))
        return "".join(out)

    def _pipeline(self, expr: str) -> Any:
        stages = [shlex.split(s, posix=False) for s in expr.split("|")]
        value = self._call(stages[0][0], stages[0][1:], None, first=True)
        for stage in stages[1:]:
            value = self._call(stage[0], stage[1:], value)
        return value

    def _call(self, fn: str, args: list[str], piped: Any, first: bool = False) -> Any:
        if first and not args:
            return self._term(fn)
        vals = [self._term(a) for a in args] + ([] if first else [piped])
        if fn == "include":
            return self._run(self.defines[vals[0]])
        if fn == "quote":
            return json.dumps(_text(vals[0]))
        if fn == "toYaml":
            dumped = yaml.safe_dump(vals[0], default_flow_style=False, sort_keys=True)
            return dumped.rstrip("\n")
        if fn in ("nindent", "indent"):
            pad = " " * int(vals[0])
            text = "\n".join(pad + line if line else line for line in _text(vals[1]).split("\n"))
            return "\n" + text if fn == "nindent" else text
        raise ValueError(f"template function {fn!r} is outside the supported subset")

    def _term(self, term: str) -> Any:
        if term.startswith('"'):
            return json.loads(term)
        if term == ".":
            return self.context
        if term.isdigit():
            return int(term)
        if not term.startswith("."):
            raise ValueError(f"template term {term!r} is outside the supported subset")
        value: Any = self.context
        for part in term[1:].split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"{term}: no {part!r}")
            value = value[part]
        return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


if __name__ == "__main__":
    chart = Chart(sys.argv[1])
    for name, text in chart.render().items():
        print(f"---\n# Source: {chart.context['Chart']['Name']}/templates/{name}\n{text.strip()}")
