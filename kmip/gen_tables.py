"""Generate kmip/tables.py from the data file kmip/spec/kmip.toml.

Run ``python -m keyquorum.kmip.gen_tables`` after editing the data file;
``--check`` exits 1 when tables.py is stale (the test suite runs it).

Theory of operation: the data file holds each tag, enumeration value and mask
bit once, under the name the specification gives it. Everything else is
derived here, by rules, so that a name is never spelled twice by hand:

- the XML and JSON encodings' name follows the normalization rule of the KMIP
  Profiles ("Pre-Active" -> "PreActive", "PKCS#1" -> "PKCS_1", "3DES" ->
  "DES3"); an entry's ``xml`` key overrides it where an encoding disagrees;
- the Python member name is the spec name in UPPER_SNAKE ("Pre-Active" ->
  "PRE_ACTIVE", "3DES" -> "DES3"); an entry's ``py`` key overrides it, which is
  how two values that would collide are told apart;
- the class name is the spec name CamelCased ("Result Reason" -> ResultReason).

A tag whose ``enum`` is "Tag" holds a tag number as its value (KMIP 2.x
Attribute Reference): its value names are the tag table itself.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DATA_FILE = HERE / "spec" / "kmip.toml"
OUTPUT_FILE = HERE / "tables.py"

# The enumeration whose values are tag numbers; it is the Tag class itself.
TAG_ENUMERATION = "Tag"
VERSIONS = {(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1)}

Entry = dict[str, Any]


class DataError(Exception):
    """The data file breaks a rule the generated module relies on."""


def _leading_digits_last(word: str) -> str:
    """'3DES' -> 'DES3': neither Python nor XML names may start with a digit."""
    match = re.match(r"(\d+)(.*)", word)
    return match.group(2) + match.group(1) if match else word


def python_name(spec_name: str) -> str:
    """'Pre-Active' -> 'PRE_ACTIVE', 'PKCS#1' -> 'PKCS_1', '3DES' -> 'DES3'."""
    words = [word.upper() for word in re.split(r"[^0-9A-Za-z]+", spec_name) if word]
    words[0] = _leading_digits_last(words[0])
    return "_".join(words)


def normalized_name(spec_name: str) -> str:
    """The KMIP Profiles' rule for XML and JSON names of tags and values."""
    # First, brackets become word breaks.
    text = re.sub(r"[()]", " ", spec_name)
    # A mark that starts a new word ("Pre-Active", "MAC/sign") breaks words too,
    text = re.sub(r"[^0-9A-Za-z_](?=[A-Za-z][a-z])", " ", text)
    # while any other mark ("PKCS#1", "X.509", "SHA-256") becomes an underscore.
    text = re.sub(r"[^0-9A-Za-z_\s]", "_", text)
    words = text.split()
    words[0] = _leading_digits_last(words[0])
    # Then each word is capitalized (only its first letter) and all are joined.
    return "".join(word[0].upper() + word[1:] for word in words)


def xml_name(entry: Entry) -> str:
    if "xml" in entry:
        return str(entry["xml"])
    return normalized_name(entry["name"])


def xml_names(entry: Entry) -> list[str]:
    """The XML name first, then the names an older encoding used (accepted on input)."""
    return [xml_name(entry), *entry.get("aliases", [])]


def member_name(entry: Entry) -> str:
    if "py" in entry:
        return str(entry["py"])
    return python_name(entry["name"])


def class_name(spec_name: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", spec_name)
    return "".join(word[0].upper() + word[1:] for word in words if word)


def version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    parsed = int(major), int(minor)
    if parsed not in VERSIONS:
        raise DataError(f"unknown protocol version {text!r}")
    return parsed


def check_unique(kind: str, entries: list[Entry], key: str = "value") -> None:
    """Numbers, member names and XML names must each be unique in one class."""
    for what, of in (
        (key, lambda e: [e[key]]),
        ("name", lambda e: [member_name(e)]),
        ("xml", xml_names),
    ):
        seen: dict[object, str] = {}
        for entry in entries:
            for item in of(entry):
                if item in seen:
                    raise DataError(
                        f"{kind}: {what} {item!r} of {entry['name']!r} is also {seen[item]!r}"
                    )
                seen[item] = entry["name"]


def validate(data: dict[str, Any]) -> None:
    tags = data.get("tag", [])
    check_unique("Tag", tags)
    classes = {TAG_ENUMERATION}
    for group, key in (("enumeration", "values"), ("mask", "bits")):
        for enum in data.get(group, []):
            name = class_name(enum["name"])
            if name in classes:
                raise DataError(f"class {name} is defined twice")
            classes.add(name)
            check_unique(enum["name"], enum[key])
    enumerations = {e["name"] for e in data.get("enumeration", [])} | {TAG_ENUMERATION}
    masks = {m["name"] for m in data.get("mask", [])}
    for tag in tags:
        if "enum" in tag and tag["enum"] not in enumerations:
            raise DataError(f"tag {tag['name']!r}: no enumeration {tag['enum']!r}")
        if "mask" in tag and tag["mask"] not in masks:
            raise DataError(f"tag {tag['name']!r}: no mask {tag['mask']!r}")


def render_class(name: str, base: str, members: list[Entry]) -> list[str]:
    out = ["", "", f"class {name}({base}):"]
    out += [f"    {member_name(m)} = 0x{m['value']:08X}" for m in members]
    return out if members else [*out, "    pass"]


def render_values(title: str, items: list[tuple[str, list[Entry], str]]) -> list[str]:
    """One dict per class: {value: derived(entry)} with the tags' own dict for Tag."""
    out = [title]
    for cls, members, of in items:
        out.append(f"    {cls}: {{")
        for m in members:
            item = xml_name(m) if of == "xml" else version(m["since"])
            out.append(f"        0x{m['value']:08X}: {item!r},")
        out.append("    },")
    return out


def render(data: dict[str, Any]) -> str:
    validate(data)
    tags = sorted(data.get("tag", []), key=lambda t: t["value"])
    enumerations = data.get("enumeration", [])
    masks = data.get("mask", [])
    classes = [(class_name(e["name"]), e["values"]) for e in enumerations]
    classes += [(class_name(m["name"]), m["bits"]) for m in masks]

    # First the classes: tags, then each enumeration and each mask.
    out: list[str] = [
        '"""KMIP tags, enumerations and masks.',
        "",
        "GENERATED from kmip/spec/kmip.toml by `python -m keyquorum.kmip.gen_tables`:",
        "do not edit. The numbers are on the wire and on disk: never renumber.",
        '"""',
        "",
        "from enum import IntEnum, IntFlag",
        "",
        "# An enumeration or a mask class: the keys of the per-value tables.",
        "EnumClass = type[IntEnum] | type[IntFlag]",
        "",
        "",
        "class Tag(IntEnum):",
    ]
    out += [f"    {member_name(t)} = 0x{t['value']:06X}" for t in tags]
    for enum in enumerations:
        out += render_class(class_name(enum["name"]), "IntEnum", enum["values"])
    for mask in masks:
        out += render_class(class_name(mask["name"]), "IntFlag", mask["bits"])

    # Then the per-tag tables.
    def tag_dict(title: str, decl: str, rows: list[str]) -> list[str]:
        return ["", title, f"{decl} = {{", *rows, "}"]

    out.append("")
    out += tag_dict(
        "# Tag number -> the name the XML and JSON encodings use.",
        "TAG_XML_NAMES: dict[int, str]",
        [f"    0x{t['value']:06X}: {xml_name(t)!r}," for t in tags],
    )
    out += tag_dict(
        "# Tag number -> the name the specification gives it.",
        "TAG_SPEC_NAMES: dict[int, str]",
        [f"    0x{t['value']:06X}: {t['name']!r}," for t in tags],
    )
    out += tag_dict(
        "# Tag number -> the first protocol version that defines it.",
        "TAG_SINCE: dict[int, tuple[int, int]]",
        [f"    0x{t['value']:06X}: {version(t['since'])!r}," for t in tags],
    )
    out += tag_dict(
        "# Tag number -> the enumeration its Enumeration values use.",
        "TAG_ENUMS: dict[int, type[IntEnum]]",
        [f"    0x{t['value']:06X}: {class_name(t['enum'])}," for t in tags if "enum" in t],
    )
    out += tag_dict(
        "# Tag number -> the mask its Integer values use.",
        "TAG_MASKS: dict[int, type[IntFlag]]",
        [f"    0x{t['value']:06X}: {class_name(t['mask'])}," for t in tags if "mask" in t],
    )
    out += tag_dict(
        "# Attribute tags: 1.x Attribute Name text -> tag.",
        "ATTRIBUTE_TAGS: dict[str, int]",
        [f"    {t['name']!r}: 0x{t['value']:06X}," for t in tags if t.get("attribute")],
    )
    out += tag_dict(
        "# XML and JSON name (or an accepted alias) -> tag number.",
        "TAGS_BY_XML_NAME: dict[str, int]",
        [f"    {name!r}: 0x{t['value']:06X}," for t in tags for name in xml_names(t)],
    )

    # Last the per-value tables; Tag's values are the tag table itself.
    out += ["", ""]
    out += render_values(
        "# Enumeration or mask -> {value: XML name}.\n"
        "VALUE_XML_NAMES: dict[EnumClass, dict[int, str]] = {\n"
        "    Tag: TAG_XML_NAMES,",
        [(cls, members, "xml") for cls, members in classes],
    )
    out += ["}", ""]
    out += render_values(
        "# Enumeration or mask -> {value: first protocol version}.\n"
        "VALUE_SINCE: dict[EnumClass, dict[int, tuple[int, int]]] = {\n"
        "    Tag: TAG_SINCE,",
        [(cls, members, "since") for cls, members in classes],
    )
    out += ["}", ""]
    out += [
        "# Enumeration or mask -> {XML name or accepted alias: value}, for decoders.",
        "VALUES_BY_XML_NAME: dict[EnumClass, dict[str, int]] = {",
        "    Tag: TAGS_BY_XML_NAME,",
    ]
    for cls, members in classes:
        out.append(f"    {cls}: {{")
        for m in members:
            out += [f"        {name!r}: 0x{m['value']:08X}," for name in xml_names(m)]
        out.append("    },")
    out += ["}", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    with DATA_FILE.open("rb") as data_file:
        try:
            text = render(tomllib.load(data_file))
        except DataError as error:
            print(f"kmip/spec/kmip.toml: {error}", file=sys.stderr)
            return 2
    if "--check" in argv:
        if OUTPUT_FILE.read_text() != text:
            print(
                "kmip/tables.py is stale: run python -m keyquorum.kmip.gen_tables", file=sys.stderr
            )
            return 1
        return 0
    OUTPUT_FILE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
