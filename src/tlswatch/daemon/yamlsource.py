"""YAML with line numbers: the parsed data plus, for every key and list item, the line it
came from — so a config error can name file, line and key (STYLE.md rule 9).

PyYAML's SafeLoader keeps a start mark on every node of the composed tree; we compose the
tree once, build plain Python data from it with the SafeLoader's own scalar constructors, and
record ``path -> line`` on the way. Duplicate mapping keys (which PyYAML silently collapses
to the last one) are reported as problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class YamlDocument:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def load_yaml(text: str) -> YamlDocument:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlSyntaxError(f"YAML syntax error: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from None
    finally:
        loader.dispose()
    doc = YamlDocument(None)
    if node is None:
        return doc
    doc.lines[()] = node.start_mark.line + 1
    doc.data = _build(node, (), doc, yaml.SafeLoader(""))
    return doc


def _build(node: yaml.Node, path: Path, doc: YamlDocument, ctor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves "<<" merge keys like SafeLoader does
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, path, doc, ctor)
            if not isinstance(key, str | int | float | bool) and key is not None:
                doc.problems.append((path, f"unsupported mapping key {key!r}"))
                continue
            kp = (*path, str(key))
            if key in out:
                doc.problems.append((kp, f"duplicate key {key!r}"))
                doc.lines[kp] = key_node.start_mark.line + 1
                continue
            doc.lines[kp] = key_node.start_mark.line + 1
            out[key] = _build(value_node, kp, doc, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(item, (*path, i), doc, ctor))
        return items
    return ctor.construct_object(node, deep=True)
