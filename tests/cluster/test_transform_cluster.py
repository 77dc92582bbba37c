"""Transform on a real 3-node cluster: the admin API over HTTPS and the CLI.

Configuration is written through one node and used through the others; tokens made
through a follower decode everywhere, and still decode after the leader is killed and
another is elected. One cluster serves the module; the leader change comes last.
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from harness import Cluster

from keyquorum.cluster.cli import cli as keyquorum_cli


@pytest.fixture(scope="module")
def root_token(cluster: Cluster) -> str:
    return cluster.admin_token


def api(cluster: Cluster, token: str, node_id: str) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    return httpx.Client(base_url=cluster.nodes[node_id].api, verify=verify,
                        headers={"X-Keyquorum-Token": token}, timeout=20)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return " ".join(response.json()["errors"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def setup(cluster: Cluster, root_token: str) -> dict[str, str]:
    """A scope with a scoped token, three transformations and a role, written on a follower."""
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    scope, role = unique("payments"), unique("cards")
    with api(cluster, root_token, follower) as admin:
        ok(admin.post(f"/v1/kmip/scope/{scope}"))
        scoped = ok(admin.post("/v1/auth/token/create",
                               json={"kind": "scoped", "scope": scope}))["token"]
        read_only = ok(admin.post("/v1/auth/token/create", json={"kind": "read-only"}))["token"]
        ok(admin.post("/v1/transform/transformation/cc-fpe", json={
            "type": "fpe", "template": "builtin/creditcardnumber", "tweak_source": "internal"}))
        ok(admin.post("/v1/transform/transformation/cc-mask", json={
            "type": "masking", "template": "builtin/creditcardnumber",
            "masking_character": "#"}))
        ok(admin.post("/v1/transform/transformation/cc-token", json={
            "type": "tokenization", "convergent": True, "max_ttl": "24h"}))
        ok(admin.post("/v1/transform/transformation/cc-token-random", json={
            "type": "tokenization", "decode_roles": ["nobody"]}))
        ok(admin.post(f"/v1/transform/role/{role}", json={
            "transformations": ["cc-fpe", "cc-mask", "cc-token", "cc-token-random"],
            "scopes": [scope]}))
    return {"scope": scope, "role": role, "scoped": scoped, "read_only": read_only,
            "follower": follower}


def other_node(cluster: Cluster, *not_these: str) -> str:
    return next(node for node in cluster.nodes if node not in not_these)


def test_fpe_and_masking_through_followers(cluster: Cluster, setup: dict[str, str]) -> None:
    role, first = setup["role"], setup["follower"]
    second = other_node(cluster, first)
    with api(cluster, setup["scoped"], first) as one, api(cluster, setup["scoped"],
                                                          second) as two:
        encoded = ok(one.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-fpe", "value": "4111-1111-1111-1111"}))["encoded_value"]
        masked = ok(two.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-mask", "value": "4111-1111-1111-1111"}))["encoded_value"]
        decoded = ok(two.post(f"/v1/transform/decode/{role}", json={
            "transformation": "cc-fpe", "value": encoded}))["decoded_value"]

    assert encoded != "4111-1111-1111-1111" and encoded[4] == encoded[9] == "-"
    assert masked == "####-####-####-####"
    assert decoded == "4111-1111-1111-1111"


def test_batches_answer_per_item(cluster: Cluster, setup: dict[str, str]) -> None:
    with api(cluster, setup["scoped"], setup["follower"]) as client:
        answer = ok(client.post(f"/v1/transform/encode/{setup['role']}", json={
            "transformation": "cc-fpe",
            "batch_input": [{"value": "4111111111111111"}, {"value": "4111"},
                            {"value": "5500 0000 0000 0004"}]}))["batch_results"]

    assert [sorted(item) for item in answer] == [["encoded_value"], ["error"],
                                                 ["encoded_value"]]
    assert "does not match template builtin/creditcardnumber" in answer[1]["error"]


def test_wrong_length_is_a_400_that_says_the_range(cluster: Cluster, root_token: str) -> None:
    name = unique("digits")
    with api(cluster, root_token, cluster.leader()) as admin:
        ok(admin.post(f"/v1/transform/template/{name}", json={
            "pattern": r"(\d+)", "alphabet": "builtin/numeric"}))
        ok(admin.post(f"/v1/transform/transformation/{name}", json={
            "type": "fpe", "template": name, "tweak_source": "supplied"}))
        ok(admin.post(f"/v1/transform/role/{name}", json={"transformations": [name]}))
        tweak = base64.b64encode(b"1234567").decode()

        short = admin.post(f"/v1/transform/encode/{name}", json={
            "transformation": name, "value": "12345", "tweak": tweak})
        bad_tweak = admin.post(f"/v1/transform/encode/{name}", json={
            "transformation": name, "value": "123456", "tweak": base64.b64encode(b"8bytes!!")
            .decode()})

    assert "has 5 characters" in refused(short, 400)
    assert "takes 6 to 56" in short.text
    assert "7 bytes (56 bits)" in refused(bad_tweak, 400)


def test_who_may_use_a_role(cluster: Cluster, root_token: str,
                            setup: dict[str, str]) -> None:
    role, node = setup["role"], setup["follower"]
    body = {"transformation": "cc-fpe", "value": "4111111111111111"}
    with api(cluster, root_token, node) as admin:
        other_scope = unique("other")
        ok(admin.post(f"/v1/kmip/scope/{other_scope}"))
        stranger = ok(admin.post("/v1/auth/token/create",
                                 json={"kind": "scoped", "scope": other_scope}))["token"]
        assert "encoded_value" in ok(admin.post(f"/v1/transform/encode/{role}", json=body))
    with api(cluster, setup["read_only"], node) as reader:
        assert "may not use role" in refused(
            reader.post(f"/v1/transform/encode/{role}", json=body), 403)
        assert "cc-fpe" in ok(reader.get("/v1/transform/transformation"))["keys"]
        assert "root token" in refused(reader.post("/v1/transform/alphabet/x",
                                                   json={"alphabet": "ab"}), 403)
    with api(cluster, stranger, node) as other:
        assert "may not use role" in refused(
            other.post(f"/v1/transform/encode/{role}", json=body), 403)
    with api(cluster, setup["scoped"], node) as scoped:
        assert "cluster-wide" in refused(scoped.get("/v1/transform/role"), 403)
        token = ok(scoped.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-token-random", "value": "x"}))["encoded_value"]
        assert "does not allow role" in refused(scoped.post(
            f"/v1/transform/decode/{role}",
            json={"transformation": "cc-token-random", "value": token}), 403)


def test_keys_never_leave_the_api(cluster: Cluster, root_token: str) -> None:
    with api(cluster, root_token, cluster.leader()) as admin:
        view = ok(admin.get("/v1/transform/transformation/cc-fpe"))

    assert view["type"] == "fpe" and view["tweak_source"] == "internal"
    assert not {"key", "key_sealed", "internal_tweak"} & set(view)


def cli(cluster: Cluster, token: str, node_id: str, *args: str) -> Result:
    """`keyquorum transform ...`, in this process (a new interpreter per call is slow)."""
    env = {"KEYQUORUM_ADDR": cluster.nodes[node_id].api, "KEYQUORUM_TOKEN": token,
           "KEYQUORUM_CACERT": str(cluster.ca)}
    return CliRunner().invoke(keyquorum_cli, ["transform", *args], env=env)


def test_the_cli_configures_and_uses_transform(cluster: Cluster, root_token: str) -> None:
    node = cluster.leader()
    name = unique("cli")

    steps = [
        ("alphabet", "write", name, "0123456789ABCDEF"),
        ("template", "write", name, "--pattern", r"([0-9A-F]{8})", "--alphabet", name,
         "--decode-format", "lower=$1"),
        ("transformation", "write", name, "--type", "fpe", "--template", name,
         "--tweak-source", "generated"),
        ("role", "write", name, "--transformation", name),
    ]
    for step in steps:
        done = cli(cluster, root_token, node, *step)
        assert done.exit_code == 0, done.output
    encoded = cli(cluster, root_token, node, "encode", name, "--transformation", name,
                  "DEADBEEF", "--json")
    assert encoded.exit_code == 0, encoded.output
    answer = json.loads(encoded.stdout)
    decoded = cli(cluster, root_token, other_node(cluster, node), "decode", name,
                  "--transformation", name, "--tweak", answer["tweak"],
                  answer["encoded_value"])
    wrong = cli(cluster, root_token, node, "alphabet", "write", unique("bad"), "AA")

    assert decoded.exit_code == 0 and "DEADBEEF" in decoded.stdout
    assert wrong.exit_code == 2 and "repeats 'A'" in wrong.output


def test_tokens_through_a_follower_and_after_a_leader_change(
        cluster: Cluster, setup: dict[str, str]) -> None:
    role, scoped = setup["role"], setup["scoped"]
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    cards = [f"4111-0000-0000-{n:04d}" for n in range(20)]
    with api(cluster, scoped, follower) as client:
        made = ok(client.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-token", "ttl": "1h", "metadata": {"source": "test"},
            "batch_input": [{"value": card} for card in cards]}))["batch_results"]
    tokens = [item["encoded_value"] for item in made]

    cluster.kill(leader)
    new_leader = cluster.leader(among=cluster.followers(leader), timeout=20)
    survivor = other_node(cluster, leader, new_leader)

    def decoded_on(node_id: str, values: list[str]) -> list[str]:
        with api(cluster, scoped, node_id) as client:
            answer = ok(client.post(f"/v1/transform/decode/{role}", json={
                "transformation": "cc-token",
                "batch_input": [{"value": value} for value in values]}))
        return [item.get("decoded_value", item.get("error")) for item in answer["batch_results"]]

    assert decoded_on(new_leader, tokens) == cards
    assert decoded_on(survivor, tokens) == cards
    # Convergent: encoding again through the new leader gives the same tokens.
    with api(cluster, scoped, new_leader) as client:
        again = ok(client.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-token", "value": cards[0]}))["encoded_value"]
        looked_up = ok(client.post(f"/v1/transform/tokens/lookup/{role}", json={
            "transformation": "cc-token", "value": cards[1]}))["tokens"]
        metadata = ok(client.post(f"/v1/transform/tokens/metadata/{role}", json={
            "transformation": "cc-token", "value": tokens[2]}))
        fresh = ok(client.post(f"/v1/transform/encode/{role}", json={
            "transformation": "cc-token-random", "value": "after the change"}))
    assert again == tokens[0]
    assert looked_up == [tokens[1]]
    assert metadata["metadata"] == {"source": "test"} and metadata["expires_at"] is not None
    assert fresh["encoded_value"]
