"""`keyquorum transform ...`: Transform's admin API (cluster/transform/api.py) from a shell.

Where to reach the API, the token and the CA come from the same flags and environment
as every admin command (cluster/cli_admin.py), and so do the exit codes: 0 ok, 2 when
the input is wrong (the message says what to fix), 1 when the cluster could not be
reached or could not commit.
"""

from __future__ import annotations

from typing import Any

import click

from ..cli_admin import AdminError, _client, _show, api_options


@click.group()
def transform() -> None:
    """Transform: format-preserving encryption, masking and tokenization of values."""


def _pairs(option: str, given: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdminError(f"{option} takes NAME=VALUE, not {item!r}")
        pairs[key] = value
    return pairs


def _keys(answer: dict[str, Any], as_json: bool, what: str) -> None:
    _show(answer, as_json, [(name,) for name in answer["keys"]], (what,))


# Alphabets.


@transform.group()
def alphabet() -> None:
    """Alphabets: the characters FF3-1 works over (built-in: builtin/numeric, ...)."""


@alphabet.command("write")
@click.argument("name")
@click.argument("characters")
@api_options
def alphabet_write(name: str, characters: str, as_json: bool, **options: Any) -> None:
    """Write alphabet NAME of CHARACTERS (2 to 65,536, each once)."""
    _show(_client(options).call("POST", f"/v1/transform/alphabet/{name}",
                                {"alphabet": characters}), as_json)


@alphabet.command("read")
@click.argument("name")
@api_options
def alphabet_read(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("GET", f"/v1/transform/alphabet/{name}"), as_json)


@alphabet.command("list")
@api_options
def alphabet_list(as_json: bool, **options: Any) -> None:
    _keys(_client(options).call("GET", "/v1/transform/alphabet"), as_json, "alphabet")


@alphabet.command("delete")
@click.argument("name")
@api_options
def alphabet_delete(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("DELETE", f"/v1/transform/alphabet/{name}"), as_json)


# Templates.


@transform.group()
def template() -> None:
    """Templates: regular expressions whose groups hold the characters to transform."""


@template.command("write")
@click.argument("name")
@click.option("--pattern", required=True, help="A regular expression with capture groups.")
@click.option("--alphabet", "alphabet_name", required=True, help="The groups' alphabet.")
@click.option("--encode-format", default="", help="Layout of encoded values, as $1-$2.")
@click.option("--decode-format", "decode_formats", multiple=True, metavar="NAME=FORMAT",
              help="A named layout for decoded values; repeat it.")
@api_options
def template_write(name: str, pattern: str, alphabet_name: str, encode_format: str,
                   decode_formats: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Write template NAME."""
    body = {"type": "regex", "pattern": pattern, "alphabet": alphabet_name,
            "encode_format": encode_format,
            "decode_formats": _pairs("--decode-format", decode_formats)}
    _show(_client(options).call("POST", f"/v1/transform/template/{name}", body), as_json)


@template.command("read")
@click.argument("name")
@api_options
def template_read(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("GET", f"/v1/transform/template/{name}"), as_json)


@template.command("list")
@api_options
def template_list(as_json: bool, **options: Any) -> None:
    _keys(_client(options).call("GET", "/v1/transform/template"), as_json, "template")


@template.command("delete")
@click.argument("name")
@api_options
def template_delete(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("DELETE", f"/v1/transform/template/{name}"), as_json)


# Transformations.


@transform.group()
def transformation() -> None:
    """Transformations: fpe, masking or tokenization, and the roles allowed to use them."""


@transformation.command("write")
@click.argument("name")
@click.option("--type", "kind", required=True,
              type=click.Choice(["fpe", "masking", "tokenization"]))
@click.option("--template", "template_name", default="", help="fpe and masking: the template.")
@click.option("--tweak-source", type=click.Choice(["supplied", "generated", "internal"]),
              default="supplied", show_default=True, help="fpe: where tweaks come from.")
@click.option("--masking-character", default="*", show_default=True)
@click.option("--convergent", is_flag=True, help="tokenization: same value, same token.")
@click.option("--max-ttl", default="0", help="tokenization: token lifetime cap (24h, 7d).")
@click.option("--allowed-role", "allowed_roles", multiple=True, metavar="ROLE",
              help="A role that may use it (default: any role listing it); repeat it.")
@click.option("--decode-role", "decode_roles", multiple=True, metavar="ROLE",
              help="A role that may decode (default: every allowed role); repeat it.")
@api_options
def transformation_write(name: str, kind: str, template_name: str, tweak_source: str,
                         masking_character: str, convergent: bool, max_ttl: str,
                         allowed_roles: tuple[str, ...], decode_roles: tuple[str, ...],
                         as_json: bool, **options: Any) -> None:
    """Write transformation NAME; a new one gets a key drawn by the cluster."""
    body = {"type": kind, "template": template_name, "tweak_source": tweak_source,
            "masking_character": masking_character, "convergent": convergent,
            "max_ttl": max_ttl, "allowed_roles": list(allowed_roles) or ["*"],
            "decode_roles": list(decode_roles) or ["*"]}
    _show(_client(options).call("POST", f"/v1/transform/transformation/{name}", body), as_json)


@transformation.command("read")
@click.argument("name")
@api_options
def transformation_read(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("GET", f"/v1/transform/transformation/{name}"), as_json)


@transformation.command("list")
@api_options
def transformation_list(as_json: bool, **options: Any) -> None:
    _keys(_client(options).call("GET", "/v1/transform/transformation"), as_json,
          "transformation")


@transformation.command("delete")
@click.argument("name")
@api_options
def transformation_delete(name: str, as_json: bool, **options: Any) -> None:
    """Delete transformation NAME, its key and its tokens."""
    _show(_client(options).call("DELETE", f"/v1/transform/transformation/{name}"), as_json)


# Roles.


@transform.group()
def role() -> None:
    """Transform roles: which transformations, used with which scopes' tokens."""


@role.command("write")
@click.argument("name")
@click.option("--transformation", "transformations", multiple=True, required=True,
              metavar="NAME", help="A transformation the role may use; repeat it.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="A scope whose scoped tokens may use the role; repeat it.")
@api_options
def role_write(name: str, transformations: tuple[str, ...], scopes: tuple[str, ...],
               as_json: bool, **options: Any) -> None:
    body = {"transformations": list(transformations), "scopes": list(scopes)}
    _show(_client(options).call("POST", f"/v1/transform/role/{name}", body), as_json)


@role.command("read")
@click.argument("name")
@api_options
def role_read(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("GET", f"/v1/transform/role/{name}"), as_json)


@role.command("list")
@api_options
def role_list(as_json: bool, **options: Any) -> None:
    _keys(_client(options).call("GET", "/v1/transform/role"), as_json, "role")


@role.command("delete")
@click.argument("name")
@api_options
def role_delete(name: str, as_json: bool, **options: Any) -> None:
    _show(_client(options).call("DELETE", f"/v1/transform/role/{name}"), as_json)


# Encode and decode.


def _use_body(transformation_name: str, values: tuple[str, ...], item: dict[str, Any]) -> dict:
    item = {key: value for key, value in item.items() if value not in (None, {})}
    if len(values) == 1:
        return {"transformation": transformation_name, "value": values[0], **item}
    return {"transformation": transformation_name,
            "batch_input": [{"value": value, **item} for value in values]}


def _results(answer: dict[str, Any], values: tuple[str, ...], field: str,
             as_json: bool) -> None:
    results = answer.get("batch_results", [answer])
    rows = [(value, result.get(field, "-"), result.get("tweak") or result.get("error") or "")
            for value, result in zip(values, results, strict=True)]
    _show(answer, as_json, rows, ("value", field, "tweak / error"))


@transform.command("encode")
@click.argument("role_name", metavar="ROLE")
@click.argument("values", nargs=-1, required=True)
@click.option("--transformation", "transformation_name", required=True)
@click.option("--tweak", help="fpe with supplied tweaks: base64 of 7 bytes.")
@click.option("--ttl", help="tokenization: token lifetime (90s, 24h, 7d).")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE",
              help="tokenization: kept with the token; repeat it.")
@api_options
def encode(role_name: str, values: tuple[str, ...], transformation_name: str,
           tweak: str | None, ttl: str | None, metadata: tuple[str, ...], as_json: bool,
           **options: Any) -> None:
    """Encode VALUES through ROLE (several values go as one batch)."""
    body = _use_body(transformation_name, values,
                     {"tweak": tweak, "ttl": ttl, "metadata": _pairs("--metadata", metadata)})
    answer = _client(options).call("POST", f"/v1/transform/encode/{role_name}", body)
    _results(answer, values, "encoded_value", as_json)


@transform.command("decode")
@click.argument("role_name", metavar="ROLE")
@click.argument("values", nargs=-1, required=True)
@click.option("--transformation", "transformation_name", required=True)
@click.option("--tweak", help="fpe with supplied or generated tweaks: base64 of 7 bytes.")
@click.option("--decode-format", help="A decode format the template names.")
@api_options
def decode(role_name: str, values: tuple[str, ...], transformation_name: str,
           tweak: str | None, decode_format: str | None, as_json: bool,
           **options: Any) -> None:
    """Decode VALUES through ROLE."""
    path = f"/v1/transform/decode/{role_name}"
    if decode_format:
        path += f"/{decode_format}"
    body = _use_body(transformation_name, values, {"tweak": tweak})
    _results(_client(options).call("POST", path, body), values, "decoded_value", as_json)


# Tokens.


@transform.group()
def token() -> None:
    """Tokens of tokenization transformations."""


@token.command("lookup")
@click.argument("role_name", metavar="ROLE")
@click.argument("value")
@click.option("--transformation", "transformation_name", required=True)
@api_options
def token_lookup(role_name: str, value: str, transformation_name: str, as_json: bool,
                 **options: Any) -> None:
    """The token of VALUE (convergent transformations only)."""
    answer = _client(options).call("POST", f"/v1/transform/tokens/lookup/{role_name}",
                                   {"transformation": transformation_name, "value": value})
    _show(answer, as_json, [(t,) for t in answer["tokens"]], ("token",))


@token.command("metadata")
@click.argument("role_name", metavar="ROLE")
@click.argument("token_value", metavar="TOKEN")
@click.option("--transformation", "transformation_name", required=True)
@api_options
def token_metadata(role_name: str, token_value: str, transformation_name: str,
                   as_json: bool, **options: Any) -> None:
    answer = _client(options).call("POST", f"/v1/transform/tokens/metadata/{role_name}",
                                   {"transformation": transformation_name,
                                    "value": token_value})
    _show(answer, as_json)


@token.command("tidy")
@click.argument("transformation_name", metavar="TRANSFORMATION")
@api_options
def token_tidy(transformation_name: str, as_json: bool, **options: Any) -> None:
    """Drop the expired tokens of TRANSFORMATION."""
    _show(_client(options).call("POST", f"/v1/transform/tokens/tidy/{transformation_name}"),
          as_json)


def register(cli: click.Group) -> None:
    cli.add_command(transform)
