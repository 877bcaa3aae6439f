"""JSON Schemas of every contract, committed under `libs/contracts/schemas/`, and the guard that
keeps changes to them compatible (ARCHITECTURE §3).

    python -m misp_contracts.schemas write   # regenerate (refuses incompatible changes)
    python -m misp_contracts.schemas check   # exit 1 on incompatible or unwritten changes

Compatibility, from the committed schema (old) to the current model's (new): adding an optional
property, widening an enum or dropping a constraint is fine. Removing or renaming a property,
changing a type, making an optional property required, adding a required property, narrowing an
enum or tightening a constraint is incompatible: such a change is a new `vN` type instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from misp_contracts import events
from misp_contracts.envelope import Envelope
from misp_contracts.events.base import event_registry
from misp_contracts.settings_catalogue import SettingDefinition

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Contracts that are not events get a type string of their own, versioned like events.
ENVELOPE_TYPE = "misp.contracts.envelope.v1"
SETTING_DEFINITION_TYPE = "misp.contracts.setting-definition.v1"

Schema = dict[str, Any]


def import_event_modules() -> None:
    """Import every module of `misp_contracts.events`, so that every model is registered."""
    for module in pkgutil.iter_modules(events.__path__):
        importlib.import_module(f"{events.__name__}.{module.name}")


def contract_models() -> dict[str, type[BaseModel]]:
    """Every contract by its type string: the registered events, the envelope, settings."""
    import_event_modules()
    models: dict[str, type[BaseModel]] = dict(event_registry)
    models[ENVELOPE_TYPE] = Envelope
    models[SETTING_DEFINITION_TYPE] = SettingDefinition
    return dict(sorted(models.items()))


def schema_of(type_: str, model: type[BaseModel]) -> Schema:
    """The JSON Schema of a contract as it is committed (validation mode: what readers accept)."""
    generated = model.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "$id": f"urn:misp:contract:{type_}", **generated}


def current_schemas() -> dict[str, Schema]:
    return {type_: schema_of(type_, model) for type_, model in contract_models().items()}


def committed_schemas(directory: Path = SCHEMA_DIR) -> dict[str, Schema]:
    return {path.name.removesuffix(".json"): json.loads(path.read_text())
            for path in sorted(directory.glob("*.json"))}


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --- Structural comparison ------------------------------------------------------------------

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_MISSING = object()


def _where(path: str) -> str:
    return path or "(root)"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass
class _Comparison:
    """Walks an old and a new schema side by side and collects what would break readers."""

    old_root: Schema
    new_root: Schema
    problems: list[str] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def flag(self, path: str, message: str) -> None:
        self.problems.append(f"{_where(path)}: {message}")

    # References and unions

    @staticmethod
    def _resolve(node: Schema, root: Schema) -> tuple[Schema, str | None]:
        """Follow a local `$ref` (keeping the keywords next to it); returns (node, ref name)."""
        ref = node.get("$ref")
        if ref is None:
            if "allOf" in node and len(node["allOf"]) == 1:  # older pydantic: ref + description
                inner, name = _Comparison._resolve(node["allOf"][0], root)
                return {**inner, **{k: v for k, v in node.items() if k != "allOf"}}, name
            return node, None
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, not {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        resolved, _ = _Comparison._resolve(target, root)
        return {**resolved, **siblings}, ref

    def _branches(self, node: Schema, root: Schema) -> Iterator[tuple[Schema, str | None]]:
        """The alternatives of a node: each `anyOf`/`oneOf` branch, or each listed type."""
        node, ref = self._resolve(node, root)
        alternatives = node.get("anyOf") or node.get("oneOf")
        if alternatives:
            for branch in alternatives:
                yield from self._branches(branch, root)
        elif isinstance(node.get("type"), list):
            for type_ in node["type"]:
                yield {**node, "type": type_}, ref
        else:
            yield node, ref

    @staticmethod
    def _kind(node: Schema) -> str:
        """What a branch is (its JSON type), for matching old and new alternatives."""
        type_ = node.get("type")
        if type_ is not None:
            return str(type_)
        if "properties" in node or "additionalProperties" in node:
            return "object"
        if "items" in node or "prefixItems" in node:
            return "array"
        if "const" in node or "enum" in node:
            values = [node["const"]] if "const" in node else node["enum"]
            return "|".join(sorted({type(v).__name__ for v in values}))
        return "any"

    def _alternatives(self, node: Schema, root: Schema) -> dict[str, tuple[Schema, str | None]]:
        """The branches of a node by kind; several objects in one union are told by title."""
        branches = list(self._branches(node, root))
        kinds = [self._kind(n) for n, _ in branches]
        keyed: dict[str, tuple[Schema, str | None]] = {}
        for kind, (branch, ref) in zip(kinds, branches, strict=True):
            if kinds.count(kind) > 1:
                kind = f"{kind} {branch.get('title', len(keyed))}"
            keyed[kind] = (branch, ref)
        return keyed

    # Comparison

    def compare(self, old: Schema, new: Schema, path: str = "") -> None:
        old_branches = self._alternatives(old, self.old_root)
        new_branches = self._alternatives(new, self.new_root)
        if old_branches.keys() != new_branches.keys():
            self.flag(path, f"type changed from {' | '.join(sorted(old_branches))} "
                            f"to {' | '.join(sorted(new_branches))}")
            return
        for kind, (old_node, old_ref) in old_branches.items():
            new_node, new_ref = new_branches[kind]
            if old_ref is not None and new_ref is not None:
                if (old_ref, new_ref) in self._seen:
                    continue  # a recursive model: this pair is already being compared
                self._seen.add((old_ref, new_ref))
            self._compare_branch(old_node, new_node, path)

    def _compare_branch(self, old: Schema, new: Schema, path: str) -> None:
        self._compare_values(old, new, path)
        self._compare_constraints(old, new, path)
        if "properties" in old or "properties" in new:
            self._compare_objects(old, new, path)
        self._compare_maps(old, new, path)
        self._compare_arrays(old, new, path)

    def _compare_values(self, old: Schema, new: Schema, path: str) -> None:
        def allowed(node: Schema) -> list[Any] | None:
            return [node["const"]] if "const" in node else node.get("enum")

        old_values, new_values = allowed(old), allowed(new)
        if new_values is not None:
            if old_values is None:
                self.flag(path, f"restricted to the values {new_values}")
            elif missing := [v for v in old_values if v not in new_values]:
                self.flag(path, f"enum narrowed: {missing} no longer allowed")
        if new.get("format") is not None and old.get("format") != new.get("format"):
            self.flag(path, f"format changed from {old.get('format')} to {new['format']}")

    def _compare_constraints(self, old: Schema, new: Schema, path: str) -> None:
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                self.flag(path, f"{key} tightened from {old.get(key)} to {new[key]}")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                self.flag(path, f"{key} tightened from {old.get(key)} to {new[key]}")
        if "pattern" in new and old.get("pattern") != new["pattern"]:
            self.flag(path, f"pattern changed from {old.get('pattern')} to {new['pattern']}")

    def _compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name, old_prop in old_props.items():
            where = _join(path, name)
            if name not in new_props:
                self.flag(where, "property removed (or renamed)")
                continue
            if name in new_required and name not in old_required:
                self.flag(where, "optional property became required")
            self.compare(old_prop, new_props[name], where)
        for name in new_props.keys() - old_props.keys():
            if name in new_required:
                self.flag(_join(path, name), "required property added")
        closed = new.get("additionalProperties") is False
        if closed and old.get("additionalProperties") is not False:
            self.flag(path, "no longer accepts unknown properties")

    def _compare_maps(self, old: Schema, new: Schema, path: str) -> None:
        old_values = old.get("additionalProperties", _MISSING)
        new_values = new.get("additionalProperties", _MISSING)
        if isinstance(old_values, dict) and isinstance(new_values, dict):
            self.compare(old_values, new_values, _join(path, "{*}"))
        elif isinstance(old_values, dict) != isinstance(new_values, dict) and (
                "properties" not in old and "properties" not in new):
            self.flag(path, "type of the map's values changed")

    def _compare_arrays(self, old: Schema, new: Schema, path: str) -> None:
        old_tuple, new_tuple = old.get("prefixItems"), new.get("prefixItems")
        if old_tuple is not None or new_tuple is not None:
            if old_tuple is None or new_tuple is None or len(old_tuple) != len(new_tuple):
                self.flag(path, "tuple shape changed")
            else:
                for i, (o, n) in enumerate(zip(old_tuple, new_tuple, strict=True)):
                    self.compare(o, n, f"{path}[{i}]")
        old_items, new_items = old.get("items"), new.get("items")
        if isinstance(old_items, dict) and isinstance(new_items, dict):
            self.compare(old_items, new_items, f"{path}[]")
        elif isinstance(old_items, dict) != isinstance(new_items, dict) and (
                old_tuple is None and new_tuple is None):
            self.flag(path, "type of the array's items changed")


def incompatibilities(old: Schema, new: Schema) -> list[str]:
    """Why readers or writers of `old` would break on `new`; empty when the change is safe."""
    comparison = _Comparison(old_root=old, new_root=new)
    comparison.compare(old, new)
    return comparison.problems


# --- check and write ------------------------------------------------------------------------

@dataclass
class Report:
    incompatible: list[str] = field(default_factory=list)  # must become a new vN type
    stale: list[str] = field(default_factory=list)  # compatible, but `write` was not run

    @property
    def ok(self) -> bool:
        return not self.incompatible and not self.stale


def compare_with_committed(directory: Path = SCHEMA_DIR) -> Report:
    report = Report()
    committed, current = committed_schemas(directory), current_schemas()
    for type_, old in committed.items():
        new = current.get(type_)
        if new is None:
            report.incompatible.append(f"{type_}: the contract is gone (its schema is committed)")
            continue
        report.incompatible += [f"{type_}: {p}" for p in incompatibilities(old, new)]
        if old != new:
            report.stale.append(f"{type_}: changed compatibly; run `write`")
    for type_ in sorted(current.keys() - committed.keys()):
        report.stale.append(f"{type_}: new contract without a committed schema; run `write`")
    return report


def write(directory: Path = SCHEMA_DIR, *, force: bool = False) -> Report:
    """Regenerate the schema files; without `force`, nothing is written if a change breaks."""
    report = compare_with_committed(directory) if directory.exists() else Report()
    if report.incompatible and not force:
        return report
    directory.mkdir(parents=True, exist_ok=True)
    current = current_schemas()
    for type_, schema in current.items():
        path = directory / f"{type_}.json"
        text = render(schema)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for path in directory.glob("*.json"):
        if path.name.removesuffix(".json") not in current and force:
            path.unlink()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m misp_contracts.schemas",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="the schema folder")
    parser.add_argument("--force", action="store_true",
                        help="write: overwrite even incompatible changes (only for a type that "
                             "was never published)")
    args = parser.parse_args(argv)
    if args.command == "write":
        report = write(args.dir, force=args.force)
        if report.incompatible and not args.force:
            print("Refusing to write incompatible changes (make a new vN type):", file=sys.stderr)
            for line in report.incompatible:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"schemas written to {args.dir}")
        return 0
    report = compare_with_committed(args.dir)
    for title, lines in (("Incompatible changes (make a new vN type):", report.incompatible),
                         ("Schemas out of date:", report.stale)):
        if lines:
            print(title, file=sys.stderr)
            for line in lines:
                print(f"  {line}", file=sys.stderr)
    if report.ok:
        print("schemas are up to date and compatible")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
