"""Label rows through the real SDK: listing, creating, fetching, saving, priorities, twins."""

from __future__ import annotations

import pytest
from encord.exceptions import ResourceNotFoundError
from encord.objects import Classification, Object, Option
from encord.objects.coordinates import BoundingBoxCoordinates, PointCoordinate, PolygonCoordinates
from encord.user_client import EncordUserClient

from infra.emulator import Emulator, SeededFixture

LIST_ROUTE = "RPC labelrowmetadata.GET"
GET_ROUTE = "RPC labelrow.GET"
CREATE_ROUTE = "RPC labelrow.PUT"
SAVE_ROUTE = "RPC labelrow.POST"

VIDEO_FIXTURE = {
    "workflow": {
        "start": "Agent 1",
        "stages": [
            {"title": "Agent 1", "type": "AGENT", "pathways": [{"name": "done", "to": "Done"}]},
            {"title": "Done", "type": "DONE"},
        ],
    },
    "media": [
        {"kind": "image", "count": 30, "width": 64, "height": 48, "prelabelled": 12},
        {
            "kind": "video",
            "count": 2,
            "width": 64,
            "height": 48,
            "fps": 5,
            "duration": 2,
            "prelabelled": 1,
        },
    ],
}


def test_listing_25_rows_is_one_request(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed(VIDEO_FIXTURE)
    project = encord_client.get_project(seeded.project_hash)
    emulator.counters.reset()
    rows = project.list_label_rows_v2(
        data_hashes=seeded.data_hashes[:25], include_client_metadata=True
    )
    assert len(rows) == 25
    assert emulator.counters.snapshot() == {LIST_ROUTE: 1}
    assert emulator.counters.encord_total() == 1


def test_label_row_metadata_fields(
    encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = encord_client.get_project(basic_project.project_hash)
    data_hash = basic_project.data_hashes[7]
    (row,) = project.list_label_rows_v2(data_hashes=[data_hash], include_client_metadata=True)
    assert row.label_hash is None  # not labelled yet
    assert row.data_title == "image_0007.jpg"
    assert row.client_metadata == {"index": "7", "source": "basic"}
    assert row.workflow_graph_node is not None and row.workflow_graph_node.title == "Agent 1"
    assert str(row.backing_item_uuid) == basic_project.storage_item_uuids[data_hash]
    assert str(row.task_uuid) == basic_project.task_by_data[data_hash]
    assert (row.width, row.height, row.number_of_frames) == (320, 240, 1)
    (no_meta,) = project.list_label_rows_v2(data_hashes=[data_hash])
    assert no_meta.client_metadata is None
    (resolved,) = project.list_label_rows_v2(
        data_hashes=[data_hash], include_client_metadata=True, resolve_client_metadata_locally=True
    )
    assert resolved.client_metadata == {"index": "7", "source": "basic"}
    titled = project.list_label_rows_v2(data_title_like="image_001%")
    assert len(titled) == 10
    staged = project.list_label_rows_v2(workflow_graph_node_title_eq="Complete")
    assert staged == []


def test_initialising_10_rows_in_a_bundle_is_one_request(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed(VIDEO_FIXTURE)
    project = encord_client.get_project(seeded.project_hash)
    rows = project.list_label_rows_v2(data_hashes=seeded.data_hashes[:10])
    assert all(r.label_hash is not None for r in rows)  # pre-labelled: fetched, not created
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for row in rows:
            row.initialise_labels(bundle=bundle)
    assert emulator.counters.snapshot() == {GET_ROUTE: 1}
    assert all(len(r.get_object_instances()) == 1 for r in rows)

    fresh = project.list_label_rows_v2(data_hashes=seeded.data_hashes[15:25])
    assert all(r.label_hash is None for r in fresh)
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for row in fresh:
            row.initialise_labels(bundle=bundle)
    assert emulator.counters.snapshot() == {CREATE_ROUTE: 1}
    assert all(r.label_hash is not None for r in fresh)


def test_saved_labels_come_back_on_a_fresh_initialise(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed(VIDEO_FIXTURE)
    project = encord_client.get_project(seeded.project_hash)
    ontology = project.ontology_structure
    box = ontology.get_child_by_title("Box", type_=Object)
    outline = ontology.get_child_by_title("Outline", type_=Object)
    quality = ontology.get_child_by_title("Quality", type_=Classification)
    targets = [seeded.data_hashes[20], seeded.data_hashes[-1]]  # an unlabelled image and a video
    rows = project.list_label_rows_v2(data_hashes=targets)
    with project.create_bundle() as bundle:
        for row in rows:
            row.initialise_labels(bundle=bundle)
    for row in rows:
        instance = box.create_instance()
        instance.set_for_frames(
            BoundingBoxCoordinates(height=0.2, width=0.3, top_left_x=0.1, top_left_y=0.15), frames=0
        )
        row.add_object_instance(instance)
        polygon = outline.create_instance()
        polygon.set_for_frames(
            PolygonCoordinates(
                [PointCoordinate(0.1, 0.1), PointCoordinate(0.5, 0.1), PointCoordinate(0.3, 0.4)]
            ),
            frames=0,
        )
        row.add_object_instance(polygon)
        answer = quality.create_instance()
        answer.set_answer(quality.attributes[0].options[1])
        answer.set_for_frames(frames=0)
        row.add_classification_instance(answer)
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for row in rows:
            row.save(bundle=bundle)
    assert emulator.counters.snapshot() == {SAVE_ROUTE: 1}

    for data_hash in targets:
        assert len(emulator.state.stored_objects(seeded.project_hash, data_hash)) == 2
    again = {r.data_hash: r for r in project.list_label_rows_v2(data_hashes=targets)}
    with project.create_bundle() as bundle:
        for row in again.values():
            row.initialise_labels(bundle=bundle)
    for row in again.values():
        shapes = sorted(o.ontology_item.title for o in row.get_object_instances())
        assert shapes == ["Box", "Outline"]
        (found_box,) = row.get_object_instances(filter_ontology_object=box)
        coords = found_box.get_annotation(0).coordinates
        assert isinstance(coords, BoundingBoxCoordinates)
        assert (coords.top_left_x, coords.width) == (0.1, 0.3)
        (classification,) = row.get_classification_instances()
        stored_answer = classification.get_answer()
        assert isinstance(stored_answer, Option) and stored_answer.title == "bad"


def test_include_feature_hash_filters(emulator: Emulator, encord_client: EncordUserClient) -> None:
    seeded = emulator.seed(VIDEO_FIXTURE)
    project = encord_client.get_project(seeded.project_hash)
    outline = project.ontology_structure.get_child_by_title("Outline", type_=Object)
    (row,) = project.list_label_rows_v2(data_hashes=seeded.data_hashes[:1])
    row.initialise_labels(include_object_feature_hashes={outline.feature_node_hash})
    assert row.get_object_instances() == []
    row.initialise_labels(overwrite=True)
    assert len(row.get_object_instances()) == 1


def test_signed_data_link(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    import requests

    project = encord_client.get_project(basic_project.project_hash)
    (row,) = project.list_label_rows_v2(data_hashes=basic_project.data_hashes[:1])
    row.initialise_labels(include_signed_url=True)
    assert row.data_link is not None and row.data_link.startswith(f"{emulator.domain}/blobs/")
    response = requests.get(row.data_link, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"


def test_priority_is_visible_in_next_listing(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = encord_client.get_project(basic_project.project_hash)
    rows = project.list_label_rows_v2(data_hashes=basic_project.data_hashes[:3])
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for index, row in enumerate(rows):
            row.set_priority(0.1 * (index + 1), bundle=bundle)
    assert emulator.counters.snapshot() == {"POST /v2/public/projects/{project_hash}/priorities": 1}
    listed = {
        r.data_hash: r.priority
        for r in project.list_label_rows_v2(data_hashes=basic_project.data_hashes[:3])
    }
    assert listed == {row.data_hash: pytest.approx(0.1 * (i + 1)) for i, row in enumerate(rows)}


def test_twin_project_shares_data_not_labels(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    assert basic_project.twin_project_hash is not None
    main = encord_client.get_project(basic_project.project_hash)
    twin = encord_client.get_project(basic_project.twin_project_hash)
    main_rows = {r.data_hash: r for r in main.list_label_rows_v2()}
    twin_rows = {r.data_hash: r for r in twin.list_label_rows_v2()}
    assert set(main_rows) == set(twin_rows) == set(basic_project.data_hashes)
    data_hash = basic_project.data_hashes[0]
    row = main_rows[data_hash]
    row.initialise_labels()
    row.save()
    assert twin.list_label_rows_v2(data_hashes=[data_hash])[0].label_hash is None
    twin_stage = twin.workflow.get_stage(name="Agent 1")
    assert str(twin_stage.uuid) != basic_project.stage_uuids["Agent 1"]
    assert emulator.state.stage_counts(basic_project.twin_project_hash) == {
        "Agent 1": 20,
        "Complete": 0,
    }


def test_unknown_label_hash_is_not_found(
    encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = encord_client.get_project(basic_project.project_hash)
    with pytest.raises(ResourceNotFoundError, match="not found"):
        project._client.get_label_rows(["00000000-0000-4000-8000-000000000000"])
