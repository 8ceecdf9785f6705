"""Issue 10: the emulator serves image groups, image sequences, pdf, audio and text items, and
keeps label branches apart, through the unmodified SDK."""

from __future__ import annotations

from typing import Any

import pytest
from encord.constants.enums import DataType
from encord.objects.coordinates import BoundingBoxCoordinates
from encord.orm.storage import StorageItemType
from encord.user_client import EncordUserClient

from infra.emulator import Emulator

ONE_OF_EACH: dict[str, Any] = {
    "title": "One of each",
    "workflow": {
        "start": "Agent 1",
        "stages": [
            {"title": "Agent 1", "type": "AGENT", "pathways": [{"name": "done", "to": "Done"}]},
            {"title": "Done", "type": "DONE"},
        ],
    },
    "media": [
        {"kind": "image", "count": 1, "title": "image.jpg", "width": 64, "height": 48},
        {"kind": "video", "count": 1, "title": "video.mp4", "width": 64, "height": 48},
        {"kind": "image_group", "count": 1, "title": "group", "images": 3, "width": 40},
        {"kind": "image_sequence", "count": 1, "title": "sequence", "duration": 1.0},
        {"kind": "pdf", "count": 1, "title": "doc.pdf", "pages": 2},
        {"kind": "audio", "count": 1, "title": "sound.mp3"},
        {"kind": "text", "count": 1, "title": "notes.txt"},
    ],
}

EXPECTED = {
    "image.jpg": (DataType.IMAGE, StorageItemType.IMAGE, "image/jpeg"),
    "video.mp4": (DataType.VIDEO, StorageItemType.VIDEO, "video/mp4"),
    "group": (DataType.IMG_GROUP, StorageItemType.IMAGE_GROUP, None),
    "sequence": (DataType.VIDEO, StorageItemType.IMAGE_SEQUENCE, "video/mp4"),
    "doc.pdf": (DataType.PDF, StorageItemType.PDF, "application/pdf"),
    "sound.mp3": (DataType.AUDIO, StorageItemType.AUDIO, "audio/mpeg"),
    "notes.txt": (DataType.PLAIN_TEXT, StorageItemType.PLAIN_TEXT, "text/plain"),
}


@pytest.fixture
def one_of_each(emulator: Emulator) -> Any:
    emulator.faults.clear()
    return emulator.seed(ONE_OF_EACH)


def test_every_data_type_lists_initialises_saves_and_downloads(
    emulator: Emulator, one_of_each: Any, encord_client: EncordUserClient
) -> None:
    import requests

    project = encord_client.get_project(one_of_each.project_hash)
    rows = project.list_label_rows_v2()
    items = {
        i.uuid: i
        for i in encord_client.get_storage_items(
            [str(r.backing_item_uuid) for r in rows], sign_url=True
        )
    }
    for row in rows:
        item = items[row.backing_item_uuid]  # type: ignore[index]
        assert (row.data_type, item.item_type, item.mime_type) == EXPECTED[row.data_title]
    with project.create_bundle() as bundle:
        for row in rows:
            row.initialise_labels(bundle=bundle)
    box = project.ontology_structure.objects[0]
    framed = [r for r in rows if r.data_type not in (DataType.AUDIO, DataType.PLAIN_TEXT)]
    for row in framed:
        instance = box.create_instance()
        instance.set_for_frames(
            BoundingBoxCoordinates(height=0.5, width=0.5, top_left_x=0, top_left_y=0)
        )
        row.add_object_instance(instance)
    with project.create_bundle() as bundle:
        for row in rows:
            row.save(bundle=bundle)
    for row in framed:
        assert len(emulator.state.stored_objects(one_of_each.project_hash, row.data_hash)) == 1

    group = next(i for i in items.values() if i.item_type == StorageItemType.IMAGE_GROUP)
    children = list(group.get_child_items(get_signed_urls=True))
    assert [c.item_type for c in children] == [StorageItemType.IMAGE] * 3
    assert all(c.width == 40 for c in children)
    for item in [*children, *(i for i in items.values() if i is not group)]:
        url = item.get_signed_url()
        assert url is not None
        response = requests.get(url, timeout=30)
        assert response.status_code == 200 and response.content, item.name
    pdf = next(i for i in items.values() if i.item_type == StorageItemType.PDF)
    assert requests.get(str(pdf.get_signed_url()), timeout=30).content.startswith(b"%PDF-")


def test_label_branches_are_kept_apart(
    emulator: Emulator, one_of_each: Any, encord_client: EncordUserClient
) -> None:
    project = encord_client.get_project(one_of_each.project_hash)
    assert emulator.state.label_branches(one_of_each.project_hash) == ["main"]
    listed = project.list_label_rows_v2(branch_name="review")
    assert {r.branch_name for r in listed} == {"review"}
    assert all(r.label_hash is None for r in listed)
    image = next(r for r in listed if r.data_title == "image.jpg")
    image.initialise_labels()
    box = project.ontology_structure.objects[0]
    instance = box.create_instance()
    instance.set_for_frames(
        BoundingBoxCoordinates(height=0.2, width=0.2, top_left_x=0, top_left_y=0)
    )
    image.add_object_instance(instance)
    image.save()

    assert emulator.state.label_branches(one_of_each.project_hash) == ["main", "review"]
    again = {r.data_title: r for r in project.list_label_rows_v2(branch_name="review")}
    assert again["image.jpg"].label_hash == image.label_hash is not None
    assert again["video.mp4"].label_hash is None
    main = {r.data_title: r for r in project.list_label_rows_v2()}
    assert main["image.jpg"].branch_name == "main" and main["image.jpg"].label_hash is None
    data_hash = image.data_hash
    assert len(emulator.state.stored_objects(one_of_each.project_hash, data_hash, "review")) == 1
    assert emulator.state.stored_objects(one_of_each.project_hash, data_hash) == []
    main["image.jpg"].initialise_labels()
    assert main["image.jpg"].get_object_instances() == []
