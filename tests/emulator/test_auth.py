"""Request signatures and access control, as the real platform enforces them."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from encord.exceptions import AuthenticationError, AuthorisationError
from encord.http.v2.request_signer import sign_request
from encord.user_client import EncordUserClient

from infra.emulator import Emulator, SeededFixture
from infra.emulator.auth import KeyRegistry, public_key_hex, verify_rest
from infra.emulator.errors import ApiError


def _openssh(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def _main_private_key(emulator: Emulator) -> Ed25519PrivateKey:
    key = serialization.load_ssh_private_key(emulator.ssh_private_key.encode(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_unregistered_key_is_refused(emulator: Emulator, basic_project: SeededFixture) -> None:
    stranger = emulator.user_client(ssh_private_key=_openssh(Ed25519PrivateKey.generate()))
    with pytest.raises(AuthenticationError, match="not registered"):
        stranger.get_project(basic_project.project_hash)
    # RPC path: sign with the stranger's key through the SDK's legacy querier.
    project = emulator.user_client().get_project(basic_project.project_hash)
    stranger_project_client = project._client
    stranger_project_client._querier._config = stranger.user_config.config
    with pytest.raises(AuthenticationError):
        project.list_label_rows_v2()


def test_key_without_access_gets_authorisation_error(
    emulator: Emulator, basic_project: SeededFixture
) -> None:
    other = emulator.seed("basic")
    key_text, key_path = emulator.register_key([basic_project.project_hash])
    assert key_path.read_text() == key_text
    client = emulator.user_client(ssh_private_key=key_text)
    assert client.get_project(basic_project.project_hash).title == "Basic agent project"
    with pytest.raises(AuthorisationError):
        client.get_project(other.project_hash)
    # RPC: a project object from an allowed key, pointed at the other project's id.
    project = client.get_project(basic_project.project_hash)
    project._client._querier.resource_id = other.project_hash
    with pytest.raises(AuthorisationError):
        project.list_label_rows_v2()


def test_tampered_body_is_refused(emulator: Emulator, basic_project: SeededFixture) -> None:
    key = _main_private_key(emulator)
    url = f"{emulator.domain}/v2/public/projects/{basic_project.project_hash}/priorities"
    body = json.dumps({"priorities": [[basic_project.data_hashes[0], 0.9]]})
    prepared = requests.Request(
        "POST", url, data=body, headers={"Content-Type": "application/json"}
    ).prepare()
    sign_request(prepared, public_key_hex(key.public_key()), key)

    prepared.body = json.dumps({"priorities": [[basic_project.data_hashes[0], 0.1]]}).encode()
    prepared.headers["Content-Length"] = str(len(prepared.body))
    with requests.Session() as session:
        tampered = session.send(prepared, timeout=10)
    assert tampered.status_code == 401 and "Content-Digest" in tampered.json()["message"]
    assert emulator.state.priority(basic_project.project_hash, basic_project.data_hashes[0]) == 0.5

    # Recomputing the digest does not help: the signature covers it.
    prepared.headers["Content-Digest"] = (
        "sha-256=:"
        + __import__("base64").b64encode(hashlib.sha256(prepared.body).digest()).decode()
        + ":"
    )
    with requests.Session() as session:
        resigned = session.send(prepared, timeout=10)
    assert resigned.status_code == 401 and "does not verify" in resigned.json()["message"]


def test_tampered_rpc_body_and_unsigned_requests_are_refused(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    key = _main_private_key(emulator)
    body = json.dumps(
        {
            "query_type": "labelrowmetadata",
            "query_method": "GET",
            "values": {"uid": None, "payload": {}},
        }
    )
    signature = key.sign(hashlib.sha256(body.encode()).digest()).hex()
    headers = {
        "ResourceType": "project",
        "ResourceID": basic_project.project_hash,
        "Authorization": f"{public_key_hex(key.public_key())}:{signature}",
        "Content-Type": "application/json",
    }
    ok = requests.post(f"{emulator.domain}/public", data=body, headers=headers, timeout=10)
    assert ok.json()["status"] == 200
    tampered = requests.post(
        f"{emulator.domain}/public", data=body.replace("GET", "PUT"), headers=headers, timeout=10
    )
    assert tampered.json()["response"] == ["AUTHENTICATION_ERROR"]

    unsigned = requests.get(
        f"{emulator.domain}/v2/public/projects/{basic_project.project_hash}", timeout=10
    )
    assert unsigned.status_code == 401
    bearer = requests.get(
        f"{emulator.domain}/v2/public/projects/{basic_project.project_hash}",
        headers={"Authorization": "Bearer abc"},
        timeout=10,
    )
    assert bearer.status_code == 401


def test_signature_must_be_fresh_and_cover_the_raw_target(tmp_path: Path) -> None:
    registry = KeyRegistry(tmp_path)
    _, _, record = registry.create(None)
    assert record.private_key_path is not None
    key = serialization.load_ssh_private_key(record.private_key_path.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    prepared = requests.Request(
        "GET", "http://127.0.0.1:1/v2/public/x", params={"dataHashes": ["a", "b"], "title": "a b"}
    ).prepare()
    sign_request(prepared, record.public_key_hex, key)
    headers = {k: str(v) for k, v in prepared.headers.items()}
    target = prepared.path_url
    assert verify_rest(registry, method="GET", target=target, headers=headers, body=b"") is record
    with pytest.raises(ApiError, match="does not verify"):
        verify_rest(
            registry, method="GET", target=target.replace("a+b", "a%20b"), headers=headers, body=b""
        )
    with pytest.raises(ApiError, match="does not verify"):
        verify_rest(registry, method="DELETE", target=target, headers=headers, body=b"")
    with pytest.raises(ApiError, match="check the client clock"):
        verify_rest(
            registry, method="GET", target=target, headers=headers, body=b"", now=time.time() + 3600
        )
    registry.revoke(record.public_key_hex)
    with pytest.raises(ApiError, match="not registered") as info:
        verify_rest(registry, method="GET", target=target, headers=headers, body=b"")
    assert info.value.status == 401
