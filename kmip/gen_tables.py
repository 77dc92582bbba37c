"""Generate kmip/tables.py from the data file kmip/spec/kmip.toml.

Run ``python -m keyquorum.kmip.gen_tables`` after editing the data file;
``--check`` exits 1 when tables.py is stale (the test suite runs it).
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


def python_name(spec_name: str) -> str:
    """'Pre-Active' -> 'PRE_ACTIVE', 'PKCS#1' -> 'PKCS_1', '3DES' -> '_3DES'."""
    words = re.split(r"[^0-9A-Za-z]+", spec_name)
    name = "_".join(word.upper() for word in words if word)
    return "_" + name if name[0].isdigit() else name


def xml_name(entry: dict[str, Any]) -> str:
    """The name the XML and JSON encodings use: words joined, each capitalized."""
    if "xml" in entry:
        return str(entry["xml"])
    words = re.split(r"[^0-9A-Za-z]+", entry["name"])
    return "".join(word[0].upper() + word[1:] for word in words if word)


def class_name(spec_name: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", spec_name)
    return "".join(word[0].upper() + word[1:] for word in words if word)


def version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def render(data: dict[str, Any]) -> str:
    tags = data.get("tag", [])
    enumerations = data.get("enumeration", [])
    masks = data.get("mask", [])
    out: list[str] = [
        '"""KMIP tags, enumerations and masks.',
        "",
        "GENERATED from kmip/spec/kmip.toml by `python -m keyquorum.kmip.gen_tables`:",
        "do not edit. The numbers are on the wire and on disk: never renumber.",
        '"""',
        "",
        "from enum import IntEnum, IntFlag",
        "",
        "",
        "class Tag(IntEnum):",
    ]
    for tag in sorted(tags, key=lambda t: t["value"]):
        out.append(f"    {python_name(tag['name'])} = 0x{tag['value']:06X}")

    for enum in enumerations:
        out += ["", "", f"class {class_name(enum['name'])}(IntEnum):"]
        for value in enum["values"]:
            out.append(f"    {python_name(value['name'])} = 0x{value['value']:08X}")

    for mask in masks:
        out += ["", "", f"class {class_name(mask['name'])}(IntFlag):"]
        for bit in mask["bits"]:
            out.append(f"    {python_name(bit['name'])} = 0x{bit['value']:08X}")

    out += ["", "", "# Tag number -> the name the XML and JSON encodings use.", "TAG_XML_NAMES = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        out.append(f"    0x{tag['value']:06X}: {xml_name(tag)!r},")
    out += ["}", "", "# Tag number -> the name the specification gives it.", "TAG_SPEC_NAMES = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        out.append(f"    0x{tag['value']:06X}: {tag['name']!r},")
    out += ["}", "", "# Tag number -> the first protocol version that defines it.", "TAG_SINCE = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        out.append(f"    0x{tag['value']:06X}: {version(tag['since'])!r},")
    out += ["}", "", "# Tag number -> the enumeration its Enumeration values use.", "TAG_ENUMS = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        if "enum" in tag:
            out.append(f"    0x{tag['value']:06X}: {class_name(tag['enum'])},")
    out += ["}", "", "# Tag number -> the mask its Integer values use.", "TAG_MASKS = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        if "mask" in tag:
            out.append(f"    0x{tag['value']:06X}: {class_name(tag['mask'])},")
    out += ["}", "", "# Attribute tags: 1.x Attribute Name text -> tag.", "ATTRIBUTE_TAGS = {"]
    for tag in sorted(tags, key=lambda t: t["value"]):
        if tag.get("attribute"):
            out.append(f"    {tag['name']!r}: 0x{tag['value']:06X},")
    out += ["}", ""]

    out += ["# Enumeration or mask -> {value: XML name}.", "VALUE_XML_NAMES = {"]
    for enum in enumerations:
        out.append(f"    {class_name(enum['name'])}: {{")
        for value in enum["values"]:
            out.append(f"        0x{value['value']:08X}: {xml_name(value)!r},")
        out.append("    },")
    for mask in masks:
        out.append(f"    {class_name(mask['name'])}: {{")
        for bit in mask["bits"]:
            out.append(f"        0x{bit['value']:08X}: {xml_name(bit)!r},")
        out.append("    },")
    out += ["}", ""]

    out += ["# Enumeration or mask -> {value: first protocol version}.", "VALUE_SINCE = {"]
    for enum in enumerations:
        out.append(f"    {class_name(enum['name'])}: {{")
        for value in enum["values"]:
            out.append(f"        0x{value['value']:08X}: {version(value['since'])!r},")
        out.append("    },")
    for mask in masks:
        out.append(f"    {class_name(mask['name'])}: {{")
        for bit in mask["bits"]:
            out.append(f"        0x{bit['value']:08X}: {version(bit['since'])!r},")
        out.append("    },")
    out += ["}", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    with DATA_FILE.open("rb") as data_file:
        text = render(tomllib.load(data_file))
    if "--check" in argv:
        if OUTPUT_FILE.read_text() != text:
            print("kmip/tables.py is stale: run `make tables`", file=sys.stderr)
            return 1
        return 0
    OUTPUT_FILE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
