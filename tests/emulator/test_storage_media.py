"""Storage items and the media bytes behind their signed URLs."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from encord.exceptions import AuthorisationError
from encord.user_client import EncordUserClient

from infra.emulator import Emulator, SeededFixture

MEDIA_FIXTURE = {
    "workflow": {
        "start": "Agent 1",
        "stages": [
            {"title": "Agent 1", "type": "AGENT", "pathways": [{"name": "done", "to": "Done"}]},
            {"title": "Done", "type": "DONE"},
        ],
    },
    "media": [
        {
            "kind": "image",
            "count": 2,
            "width": 200,
            "height": 120,
            "client_metadata": {"cam": "c{index}"},
        },
        {"kind": "image", "count": 1, "width": 40, "height": 30, "mime": "image/png"},
        {"kind": "video", "count": 1, "width": 96, "height": 64, "fps": 8, "duration": 2.5},
    ],
}


@pytest.fixture(scope="module")
def media_project(emulator: Emulator) -> SeededFixture:
    return emulator.seed(MEDIA_FIXTURE)


def test_get_storage_items_in_request_order_with_signed_urls(
    emulator: Emulator, encord_client: EncordUserClient, media_project: SeededFixture
) -> None:
    item_uuids = [media_project.storage_item_uuids[h] for h in reversed(media_project.data_hashes)]
    emulator.counters.reset()
    items = encord_client.get_storage_items(item_uuids, sign_url=True)
    assert emulator.counters.snapshot() == {"POST /v2/public/storage/items/get-bulk": 1}
    assert [str(i.uuid) for i in items] == item_uuids
    video, png, *images = items
    assert (video.item_type.value, video.frame_count, video.fps, video.duration) == (
        "video",
        20,
        8.0,
        2.5,
    )
    assert (png.mime_type, png.width, png.height) == ("image/png", 40, 30)
    assert images[-1].client_metadata == {"cam": "c0"}
    assert all((i.get_signed_url() or "").startswith(f"{emulator.domain}/blobs/") for i in items)


def test_image_bytes_decode_to_the_right_size(
    encord_client: EncordUserClient, media_project: SeededFixture
) -> None:
    for data_hash, (width, height, mime) in zip(
        media_project.data_hashes[:3],
        [(200, 120, "image/jpeg")] * 2 + [(40, 30, "image/png")],
        strict=True,
    ):
        item = encord_client.get_storage_item(
            media_project.storage_item_uuids[data_hash], sign_url=True
        )
        url = item.get_signed_url()
        assert url is not None
        response = requests.get(url, timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == mime
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (height, width, 3)
    first, second = (
        requests.get(
            encord_client.get_storage_item(
                media_project.storage_item_uuids[h], sign_url=True
            ).get_signed_url()
            or "",
            timeout=10,
        ).content
        for h in media_project.data_hashes[:2]
    )
    assert first != second  # each item has its own picture


def test_video_head_and_range(
    tmp_path: Path, encord_client: EncordUserClient, media_project: SeededFixture
) -> None:
    item = encord_client.get_storage_item(
        media_project.storage_item_uuids[media_project.data_hashes[-1]], True
    )
    url = item.get_signed_url()
    assert url is not None
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and head.headers["Accept-Ranges"] == "bytes"
    size = int(head.headers["Content-Length"])
    full = requests.get(url, timeout=30).content
    assert len(full) == size and head.headers["Content-Type"] == "video/mp4"

    part = requests.get(url, headers={"Range": "bytes=100-1099"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{size}"
    assert part.content == full[100:1100]
    tail = requests.get(url, headers={"Range": "bytes=-64"}, timeout=10)
    assert tail.status_code == 206 and tail.content == full[-64:]
    beyond = requests.get(url, headers={"Range": f"bytes={size + 10}-"}, timeout=10)
    assert beyond.status_code == 416

    path = tmp_path / "clip.mp4"
    path.write_bytes(full)
    capture = cv2.VideoCapture(str(path))
    try:
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
        ok, frame = capture.read()
        assert ok and frame.shape == (64, 96, 3)
    finally:
        capture.release()


def test_signed_urls_expire_and_cannot_be_forged(
    emulator: Emulator, encord_client: EncordUserClient, media_project: SeededFixture
) -> None:
    item_uuid = media_project.storage_item_uuids[media_project.data_hashes[0]]
    previous = emulator.media.ttl_seconds
    emulator.media.ttl_seconds = 0.5
    try:
        url = encord_client.get_storage_item(item_uuid, sign_url=True).get_signed_url()
    finally:
        emulator.media.ttl_seconds = previous
    assert url is not None
    assert requests.get(url, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while requests.get(url, timeout=10).status_code == 200:
        assert time.monotonic() < deadline, "signed URL did not expire"
        time.sleep(0.2)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and b"expired" in expired.content

    fresh = encord_client.get_storage_item(item_uuid, sign_url=True).get_signed_url()
    assert fresh is not None
    forged = fresh.replace("sig=", "sig=0")
    assert requests.get(forged, timeout=10).status_code == 403
    assert requests.get(fresh.split("?")[0], timeout=10).status_code == 403
    other = media_project.storage_item_uuids[media_project.data_hashes[1]]
    assert requests.get(fresh.replace(item_uuid, other), timeout=10).status_code == 403


def test_client_metadata_update_is_visible_in_next_get(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    data_hash = basic_project.data_hashes[0]
    item_uuid = basic_project.storage_item_uuids[data_hash]
    (item,) = encord_client.get_storage_items([item_uuid])
    emulator.counters.reset()
    item.update(client_metadata={"reviewed": True, "score": 0.5})
    assert emulator.counters.snapshot() == {
        "PATCH /v2/public/storage/folders/{folder_uuid}/items/{item_uuid}": 1
    }
    (again,) = encord_client.get_storage_items([item_uuid])
    assert again.client_metadata == {"reviewed": True, "score": 0.5}
    assert emulator.state.client_metadata(data_hash) == {"reviewed": True, "score": 0.5}
    project = encord_client.get_project(basic_project.project_hash)
    (row,) = project.list_label_rows_v2(data_hashes=[data_hash], include_client_metadata=True)
    assert row.client_metadata == {"reviewed": True, "score": 0.5}

    # Bundled updates go through patch-bulk in one request.
    items = encord_client.get_storage_items(
        [basic_project.storage_item_uuids[h] for h in basic_project.data_hashes[1:4]]
    )
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for index, each in enumerate(items):
            each.update(client_metadata={"n": index}, bundle=bundle)
    assert emulator.counters.snapshot() == {"PATCH /v2/public/storage/items/patch-bulk": 1}
    assert [emulator.state.client_metadata(h) for h in basic_project.data_hashes[1:4]] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_storage_item_of_another_project_is_refused(
    emulator: Emulator, basic_project: SeededFixture, media_project: SeededFixture
) -> None:
    key_text, _ = emulator.register_key([basic_project.project_hash])
    client = emulator.user_client(ssh_private_key=key_text)
    assert client.get_storage_items(
        [basic_project.storage_item_uuids[basic_project.data_hashes[0]]]
    )
    with pytest.raises(AuthorisationError):
        client.get_storage_items([media_project.storage_item_uuids[media_project.data_hashes[0]]])


def test_media_is_generated_once_and_cached(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed(
        {
            "workflow": MEDIA_FIXTURE["workflow"],
            "media": [{"kind": "image", "count": 1, "width": 33, "height": 17}],
        }
    )
    url = encord_client.get_storage_item(
        seeded.storage_item_uuids[seeded.data_hashes[0]], sign_url=True
    ).get_signed_url()
    assert url is not None
    before = emulator.media.generated
    bodies = [requests.get(url, timeout=10).content for _ in range(3)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert emulator.media.generated - before <= 1  # 0 when an earlier run left it in the disk cache
    assert emulator.counters.media_total() >= 3


def test_storage_items_from_label_rows(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = encord_client.get_project(basic_project.project_hash)
    assert [str(d.dataset_hash) for d in project.list_datasets()] == [basic_project.dataset_hash]
    rows = project.list_label_rows_v2(data_hashes=basic_project.data_hashes[:4])
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for row in rows:
            row.initialise_storage_item(get_signed_url=True, bundle=bundle)
    assert emulator.counters.snapshot() == {"POST /v2/public/storage/items/get-bulk": 1}
    item = rows[0].get_storage_item()
    assert str(item.uuid) == basic_project.storage_item_uuids[rows[0].data_hash]
    url = item.get_signed_url()
    assert url is not None and requests.get(url, timeout=10).status_code == 200
    assert emulator.counters.encord_total() == 1  # the signed URL came with the bulk get
