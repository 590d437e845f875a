"""The component reference and `agent schema` descriptions: complete, valid, and generated (never stale)."""

from __future__ import annotations

import msgspec
import pytest
import yaml

from agent.config import reference
from agent.config.fielddocs import field_descriptions
from agent.config.pipeline import load_texts
from agent.config.schema import TAG_DESCRIPTION, builtin_types, properties, schema_dict, undescribed

COMPONENTS = [(t.kind, t.name) for kind in ("source", "transform", "sink") for t in builtin_types(kind)]


def test_docs_components_md_is_what_the_generator_writes() -> None:
    """Regenerate and compare: run `python -m agent.config.reference` after changing a config struct."""
    assert reference.OUTPUT.read_text(encoding="utf-8") == reference.render(), \
        "docs/components.md is out of date: run python -m agent.config.reference"


def test_check_mode_fails_on_a_stale_file_and_passes_on_a_fresh_one(tmp_path) -> None:
    stale = tmp_path / "components.md"
    stale.write_text("# old\n")
    assert reference.main(["--check", "--output", str(stale)]) == 1
    assert reference.main(["--output", str(stale)]) == 0
    assert reference.main(["--check", "--output", str(stale)]) == 0


def test_every_option_of_every_component_has_a_description() -> None:
    assert undescribed() == []


def test_agent_schema_describes_every_property() -> None:
    props = list(properties(schema_dict()))
    assert len(props) > 400
    assert [name for name, prop in props if not prop.get("description")] == []


def test_a_size_or_duration_keeps_how_to_write_it_after_its_description() -> None:
    described = dict(properties(schema_dict()))
    assert described["BufferConfig.max_bytes"]["description"].startswith("Bytes the buffer holds at most")
    assert described["BufferConfig.max_bytes"]["description"].endswith('(a size in bytes, or a string like "5MiB" '
                                                                       'or "10MB")')
    assert described["TailConfig.rotate_wait"]["description"].endswith('"1m30s" or "2h")')
    assert described["TailConfig.type"]["description"] == TAG_DESCRIPTION
    assert "global" in described["PrometheusScrapeConfig.global"]["description"]  # written global_ in Python


class _Base(msgspec.Struct, kw_only=True):
    shared: int = 1
    """Declared in the base."""
    plain: int = 2  # a comment is not a description


class _Child(_Base, kw_only=True):
    own: str = "x"
    """Declared in the child,
    over two lines."""
    shared: int = 3
    """Redeclared in the child."""


def test_descriptions_are_the_strings_below_declarations_nearest_class_first() -> None:
    assert field_descriptions(_Child) == {"own": "Declared in the child, over two lines.",
                                          "shared": "Redeclared in the child."}
    assert field_descriptions(_Base) == {"shared": "Declared in the base."}


def test_every_component_is_in_the_reference_with_its_summary_options_and_example() -> None:
    text = reference.render()
    examples = reference.load_examples()
    for kind in ("source", "transform", "sink"):
        for component in builtin_types(kind):
            start = text.index(f'<a id="{kind}-{component.name.replace("_", "-")}"></a>')
            section = text[start:text.index("\n<a id=", start + 1)]
            assert component.description in section
            for field in msgspec.structs.fields(component.config):
                assert f"| `{field.encode_name}` |" in section, (component.name, field.encode_name)
            assert examples[reference.SECTION[kind]][component.name].rstrip() in section


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}-{n}" for k, n in COMPONENTS])
def test_each_example_loads_through_the_config_loader(kind: str, name: str, monkeypatch) -> None:
    monkeypatch.setenv("DD_API_KEY", "example-key")
    text = reference.load_examples()[reference.SECTION[kind]][name]
    data = yaml.safe_load(text)
    assert set(data) == {reference.SECTION[kind]}, "an example declares one component only"
    [(cid, body)] = data[reference.SECTION[kind]].items()
    assert body["type"] == name
    inputs = {}  # what the example reads from, supplied as generated events of the type it takes
    config = next(t.config for t in builtin_types(kind) if t.name == name)
    takes_logs = "logs" in getattr(config, "input_types", {"logs"})
    for source in body.get("inputs", []):
        inputs[source] = {"type": "generate", "format": "json" if takes_logs else "metrics"}
    documents = [(text, f"{name}.yaml")]
    if inputs:
        documents.append((yaml.safe_dump({"sources": inputs}), "inputs.yaml"))
    pipeline = load_texts(documents)
    assert pipeline.components[cid].type == name


def test_the_readme_tour_pipelines_load() -> None:
    """The five-minute tour's two steps, as a reader assembles them, are valid pipelines."""
    readme = (reference.ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A five-minute tour"):]
    tour = tour[:tour.index("\n## ", 1)]
    first, second = (yaml.safe_load(block.split("```")[0]) for block in tour.split("```yaml\n")[1:3])
    load_texts([(yaml.safe_dump(first), "tour.yaml")])
    both = {**first, "transforms": second["transforms"], "sinks": {**first["sinks"], **second["sinks"]}}
    pipeline = load_texts([(yaml.safe_dump(both), "tour.yaml")])
    assert set(pipeline.components) == {"containers", "parsed", "screen", "es"}
    assert pipeline.components["screen"].inputs == ["parsed"]
