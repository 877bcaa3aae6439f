"""The committed JSON Schemas are current, and the checker tells safe changes from breaking ones."""

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from misp_contracts import schemas
from misp_contracts.events import event_registry
from misp_contracts.schemas import (
    ENVELOPE_TYPE,
    SCHEMA_DIR,
    SETTING_DEFINITION_TYPE,
    compare_with_committed,
    contract_models,
    incompatibilities,
)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def test_the_committed_schemas_are_current_and_compatible() -> None:
    report = compare_with_committed(SCHEMA_DIR)

    assert report.incompatible == []
    assert report.stale == []


def test_check_command_passes_on_the_committed_files() -> None:
    assert schemas.main(["check"]) == 0


def test_every_contract_has_a_schema_file() -> None:
    files = {p.name.removesuffix(".json") for p in SCHEMA_DIR.glob("*.json")}

    assert set(event_registry) | {ENVELOPE_TYPE, SETTING_DEFINITION_TYPE} == files
    assert set(contract_models()) == files


# Small models standing for two versions of one contract.

class Inner(BaseModel):
    x: int


class Base(BaseModel):
    id: int
    name: str
    note: str | None = None
    inner: Inner
    tags: list[str] = Field(default_factory=list)
    kind: Literal["a", "b"] = "a"


def _problems(new: type[BaseModel], old: type[BaseModel] = Base) -> list[str]:
    return incompatibilities(_schema(old), _schema(new))


def test_an_identical_schema_is_compatible() -> None:
    assert _problems(Base) == []


def test_adding_an_optional_field_is_compatible() -> None:
    class AddedOptional(Base):
        extra: str | None = None
        count: int = 0

    assert _problems(AddedOptional) == []


def test_removing_a_field_is_incompatible() -> None:
    class Removed(BaseModel):
        id: int
        inner: Inner
        note: str | None = None
        tags: list[str] = Field(default_factory=list)
        kind: Literal["a", "b"] = "a"

    assert _problems(Removed) == ["name: property removed (or renamed)"]


def test_renaming_a_field_is_incompatible() -> None:
    class Renamed(BaseModel):
        id: int
        title: str
        note: str | None = None
        inner: Inner
        tags: list[str] = Field(default_factory=list)
        kind: Literal["a", "b"] = "a"

    problems = _problems(Renamed)

    assert "name: property removed (or renamed)" in problems
    assert "title: required property added" in problems


def test_changing_a_type_is_incompatible() -> None:
    class TypeChanged(Base):
        id: str  # type: ignore[assignment]

    assert _problems(TypeChanged) == ["id: type changed from integer to string"]


def test_dropping_null_from_an_optional_field_is_a_type_change() -> None:
    class NotNullable(Base):
        note: str = ""  # type: ignore[assignment]

    assert _problems(NotNullable) == ["note: type changed from null | string to string"]


def test_adding_a_required_field_is_incompatible() -> None:
    class AddedRequired(Base):
        owner: int

    assert _problems(AddedRequired) == ["owner: required property added"]


def test_making_an_optional_field_required_is_incompatible() -> None:
    class NowRequired(Base):
        note: str | None  # type: ignore[assignment]

    assert _problems(NowRequired) == ["note: optional property became required"]


def test_a_change_inside_a_referenced_model_is_found() -> None:
    class Inner2(BaseModel):
        x: str

    class NestedChange(Base):
        inner: Inner2  # type: ignore[assignment]

    assert _problems(NestedChange) == ["inner.x: type changed from integer to string"]


def test_a_change_of_list_items_is_found() -> None:
    class ItemsChanged(Base):
        tags: list[int] = Field(default_factory=list)  # type: ignore[assignment]

    assert _problems(ItemsChanged) == ["tags[]: type changed from string to integer"]


def test_narrowing_an_enum_is_incompatible_and_widening_is_not() -> None:
    class Narrowed(Base):
        kind: Literal["a"] = "a"  # type: ignore[assignment]

    class Widened(Base):
        kind: Literal["a", "b", "c"] = "a"  # type: ignore[assignment]

    assert _problems(Narrowed) == ["kind: enum narrowed: ['b'] no longer allowed"]
    assert _problems(Widened) == []


def test_tightening_a_constraint_is_incompatible() -> None:
    class Bounded(BaseModel):
        level: int = Field(0, ge=0, le=3)

    class Tighter(BaseModel):
        level: int = Field(0, ge=0, le=2)

    assert _problems(Tighter, old=Bounded) == ["level: maximum tightened from 3 to 2"]
    assert _problems(Bounded, old=Tighter) == []


def test_a_change_of_map_values_is_found() -> None:
    class Old(BaseModel):
        changes: dict[str, tuple[Any, Any]] = Field(default_factory=dict)

    class New(BaseModel):
        changes: dict[str, list[Any]] = Field(default_factory=dict)

    assert _problems(New, old=Old) == ["changes.{*}: tuple shape changed"]


def test_recursive_models_are_compared_without_looping() -> None:
    class Node(BaseModel):
        value: int
        children: list["Node"] = Field(default_factory=list)

    Node.model_rebuild()

    assert _problems(Node, old=Node) == []


def test_write_refuses_an_incompatible_change(tmp_path: Path) -> None:
    assert schemas.write(tmp_path).ok is False  # first write: every contract is new
    assert schemas.main(["check", "--dir", str(tmp_path)]) == 0
    # Pretend the committed envelope had a property that the model no longer has.
    envelope_file = tmp_path / f"{ENVELOPE_TYPE}.json"
    committed = json.loads(envelope_file.read_text())
    committed["properties"]["legacy"] = {"type": "string"}
    envelope_file.write_text(json.dumps(committed))

    report = schemas.write(tmp_path)

    assert report.incompatible == [f"{ENVELOPE_TYPE}: legacy: property removed (or renamed)"]
    assert json.loads(envelope_file.read_text()) == committed  # nothing was overwritten
    assert schemas.main(["check", "--dir", str(tmp_path)]) == 1
