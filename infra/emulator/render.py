"""Renderers: model objects (copies from ``EmulatorState``) to the JSON the encord SDK parses.

REST bodies are camelCase; the RPC label rows are the legacy snake_case dicts. Nothing here reads
the state: each function renders what it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.emulator.media import ITEM_TYPES, LABEL_DATA_TYPES, VIDEO_KINDS, MediaStore
from infra.emulator.model import (
    OWNER_EMAIL,
    Dataset,
    LabelRowView,
    Ontology,
    Project,
    Stage,
    StorageItem,
    Task,
    TaskEvent,
    annotation_task_status,
)

LONG_FORMAT = "%a, %d %b %Y %H:%M:%S UTC"


def iso(value: datetime) -> str:
    return value.isoformat()


def long_string(value: datetime | None) -> str | None:
    return value.strftime(LONG_FORMAT) if value is not None else None


@dataclass(frozen=True)
class Links:
    """The URLs of stored files: unsigned storage locations and signed download URLs."""

    media: MediaStore
    domain: str

    def item_url(self, item: StorageItem) -> str:
        # The unsigned storage location, as the platform reports it; not downloadable by itself.
        return f"emulator-storage://{item.folder_uuid}/{item.uuid}"

    def signed_url(self, item: StorageItem) -> str:
        return self.media.sign(self.domain, item.uuid)

    def client_metadata_url(self, item: StorageItem) -> str:
        return self.media.sign(self.domain, f"cm-{item.uuid}")


# -- REST (camelCase) ----------------------------------------------------------------------------
def project(project: Project, ontology: Ontology) -> dict[str, Any]:
    stages = []
    for stage in project.workflow.stages:
        rendered: dict[str, Any] = {
            "stageType": stage.stage_type,
            "uuid": stage.uuid,
            "title": stage.title,
        }
        if stage.stage_type == "AGENT":
            rendered["pathways"] = [
                {"uuid": p.uuid, "title": p.name, "destinationUuid": p.destination_uuid}
                for p in stage.pathways
            ]
        stages.append(rendered)
    return {
        "projectHash": project.project_hash,
        "projectType": "workflow",
        "status": "inProgress",
        "title": project.title,
        "description": project.description,
        "createdAt": iso(project.created_at),
        "creatorEmail": OWNER_EMAIL,
        "lastEditedAt": iso(project.last_edited_at),
        "ontologyHash": project.ontology_hash,
        "editorOntology": ontology.structure,
        "userRole": 0,
        "sourceProjects": None,
        "workflowManagerUuid": project.workflow.uuid,
        "workflow": {"stages": stages},
    }


def ontology(ontology: Ontology) -> dict[str, Any]:
    return {
        "ontologyUuid": ontology.ontology_hash,
        "title": ontology.title,
        "description": ontology.description,
        "editor": ontology.structure,
        "createdAt": iso(ontology.created_at),
        "lastEditedAt": iso(ontology.last_edited_at),
        "userRole": 0,
    }


def dataset(dataset: Dataset) -> dict[str, Any]:
    return {
        "datasetHash": dataset.dataset_hash,
        "title": dataset.title,
        "description": dataset.description,
    }


def task(task: Task, data_title: str) -> dict[str, Any]:
    return {
        "uuid": task.uuid,
        "createdAt": iso(task.created_at),
        "updatedAt": iso(task.updated_at),
        "status": task.status,
        "dataHash": task.data_hash,
        "dataTitle": data_title,
        "labelBranchName": task.branch_name,
        "assignee": task.assignee,
        "lastActionedBy": task.last_actioned_by,
        "priority": task.priority,
    }


def storage_item(item: StorageItem, links: Links, sign: bool) -> dict[str, Any]:
    media = item.media
    is_group = media.kind == "image_group"
    is_video = media.kind in VIDEO_KINDS
    audio = media.kind == "audio"
    return {
        "uuid": item.uuid,
        "parent": item.folder_uuid,
        "itemType": ITEM_TYPES[media.kind],
        "name": item.name,
        "description": item.description,
        "clientMetadata": json.dumps(item.client_metadata),
        "owner": OWNER_EMAIL,
        "createdAt": iso(item.created_at),
        "lastEditedAt": iso(item.last_edited_at),
        "isTombstone": False,
        "isPlaceholder": False,
        "backedDataUnitsCount": 1,
        "storageLocation": "encord",
        "integrationHash": None,
        "url": None if is_group else links.item_url(item),
        "signedUrl": links.signed_url(item) if sign and not is_group else None,
        "fileSize": None,
        "mimeType": None if is_group else media.mime,
        "duration": media.duration,
        "fps": media.fps if is_video else None,
        "height": None if audio or media.kind == "text" else media.height,
        "width": None if audio or media.kind == "text" else media.width,
        "dicomInstanceUid": None,
        "dicomStudyUid": None,
        "dicomSeriesUid": None,
        "frameCount": media.frames if is_video or is_group else None,
        **_AUDIO_ITEM_FIELDS[audio],
    }


# The audio properties of a storage item: set for audio, None otherwise.
_AUDIO_ITEM_FIELDS: dict[bool, dict[str, Any]] = {
    True: {
        "audioSampleRate": 44100,
        "audioBitDepth": 16,
        "audioCodec": "mp3",
        "audioNumChannels": 1,
    },
    False: {
        "audioSampleRate": None,
        "audioBitDepth": None,
        "audioCodec": None,
        "audioNumChannels": None,
    },
}

# The same audio properties on a data unit (RPC, snake_case).
_AUDIO_UNIT_FIELDS: dict[str, Any] = {
    "audio_codec": "mp3",
    "audio_sample_rate": 44100,
    "audio_bit_depth": 16,
    "audio_num_channels": 1,
}


# -- control endpoints ---------------------------------------------------------------------------
def task_history(task: Task, stage: Stage) -> dict[str, Any]:
    return {
        "uuid": task.uuid,
        "project_hash": task.project_hash,
        "data_hash": task.data_hash,
        "stage": {"uuid": stage.uuid, "title": stage.title},
        "status": task.status,
        "priority": task.priority,
        "history": [_event(e) for e in task.history],
    }


def _event(event: TaskEvent) -> dict[str, Any]:
    return {
        "action": event.action,
        "at": iso(event.at),
        "from_stage": event.from_stage_title,
        "to_stage": event.to_stage_title,
        "pathway": event.pathway_name,
        "pathway_uuid": event.pathway_uuid,
        "actor": event.actor,
    }


# -- RPC (snake_case) ----------------------------------------------------------------------------
def label_row_metadata(view: LabelRowView, links: Links, payload: dict[str, Any]) -> dict[str, Any]:
    """One row of ``labelrowmetadata.GET``; ``payload`` chooses the optional parts."""
    unit, task, row, stage, item = view.unit, view.task, view.row, view.stage, view.item
    media = item.media
    result: dict[str, Any] = {
        "label_hash": row.label_hash if row else None,
        "created_at": long_string(row.created_at) if row else None,
        "last_edited_at": long_string(row.last_edited_at) if row else None,
        "branch_name": row.branch_name if row else payload.get("branch_name") or task.branch_name,
        "data_hash": unit.data_hash,
        "dataset_hash": unit.dataset_hash,
        "dataset_title": view.dataset_title,
        "data_title": unit.title,
        "data_type": LABEL_DATA_TYPES[media.kind].upper(),
        "data_link": None if media.kind == "image_group" else links.item_url(item),
        "label_status": row.label_status if row else "NOT_LABELLED",
        "annotation_task_status": annotation_task_status(stage),
        "is_shadow_data": False,
        "number_of_frames": media.frames,
        "duration": media.duration,
        "frames_per_second": media.fps if media.kind in VIDEO_KINDS else None,
        "height": media.height,
        "width": media.width,
        **(_AUDIO_UNIT_FIELDS if media.kind == "audio" else {}),
        "spaces": {},
        "task_uuid": task.uuid,
        "priority": task.priority,
        "file_type": media.mime,
        "is_valid": True,
        "backing_item_uuid": item.uuid,
        "assigned_user_email": task.assignee,
        "last_actioned_by_user_email": task.last_actioned_by,
    }
    if payload.get("include_workflow_graph_node", True):
        result["workflow_graph_node"] = {"uuid": stage.uuid, "title": stage.title}
    if payload.get("include_client_metadata"):
        if payload.get("client_metadata_as_signed_url"):
            result["client_metadata"] = None
            result["client_metadata_signed_url"] = links.client_metadata_url(item)
        else:
            result["client_metadata"] = dict(item.client_metadata)
    if payload.get("include_images_data"):
        result["images_data"] = None
    return result


def label_row(view: LabelRowView, links: Links, payload: dict[str, Any]) -> dict[str, Any]:
    """One row of ``labelrow.GET``/``PUT``, its labels filtered as ``payload`` asks."""
    unit, task, row, stage, media = view.unit, view.task, view.row, view.stage, view.item.media
    assert row is not None, "only rows that exist are rendered in full"
    sign = bool(payload.get("get_signed_url"))
    object_filter = payload.get("include_object_feature_hashes")
    class_filter = payload.get("include_classification_feature_hashes")
    kind = "frames" if media.has_frames else "image"
    labels = _filter_unit_labels(row.unit_labels, kind, object_filter, class_filter)
    object_answers = row.object_answers
    classification_answers = row.classification_answers
    if object_filter is not None:
        kept = _object_hashes(labels, kind)
        object_answers = {k: v for k, v in object_answers.items() if k in kept}
    if class_filter is not None:
        classification_answers = {
            k: v
            for k, v in classification_answers.items()
            if v.get("featureHash") in set(class_filter)
        }
    return {
        "label_hash": row.label_hash,
        "branch_name": row.branch_name,
        "created_at": long_string(row.created_at),
        "last_edited_at": long_string(row.last_edited_at),
        "dataset_hash": unit.dataset_hash,
        "dataset_title": view.dataset_title,
        "data_title": unit.title,
        "data_hash": unit.data_hash,
        "data_type": LABEL_DATA_TYPES[media.kind],
        "data_units": _data_units(view, links, labels, sign),
        "object_answers": object_answers,
        "classification_answers": classification_answers,
        "object_actions": row.object_actions,
        "label_status": row.label_status,
        "annotation_task_status": annotation_task_status(stage),
        "is_valid": True,
        "spaces": {},
        "workflow_graph_node": {"uuid": stage.uuid, "title": stage.title},
        "task_uuid": task.uuid,
        "priority": task.priority,
    }


def _data_units(
    view: LabelRowView, links: Links, labels: dict[str, Any], sign: bool
) -> dict[str, Any]:
    """The label row's ``data_units``: one per image of an image group, else one."""
    unit, item = view.unit, view.item
    media = item.media
    if media.kind == "image_group":
        return {
            image.uuid: {
                "data_hash": image.uuid,
                "data_title": image.name,
                "data_type": image.media.mime,
                "data_sequence": str(index),
                "data_link": links.signed_url(image) if sign else links.item_url(image),
                "width": image.media.width,
                "height": image.media.height,
                "labels": labels.get(image.uuid, {}),
            }
            for index, image in enumerate(view.images)
        }
    data_unit: dict[str, Any] = {
        "data_hash": unit.data_hash,
        "data_title": unit.title,
        "data_type": media.mime,
        "data_sequence": 0,
        "data_link": links.signed_url(item) if sign else links.item_url(item),
        "labels": labels,
    }
    if media.kind in ("image", *VIDEO_KINDS):
        data_unit["width"] = media.width
        data_unit["height"] = media.height
    if media.kind in VIDEO_KINDS:
        data_unit["data_fps"] = media.fps
        data_unit["data_duration"] = media.duration
    if media.kind == "audio":
        data_unit.update(_AUDIO_UNIT_FIELDS)
        data_unit["data_duration"] = media.duration
    return {unit.data_hash: data_unit}


def _filter_unit_labels(
    labels: dict[str, Any], kind: str, objects: list[str] | None, classifications: list[str] | None
) -> dict[str, Any]:
    def keep(frame: dict[str, Any]) -> dict[str, Any]:
        result = dict(frame)
        if objects is not None:
            result["objects"] = [
                o for o in frame.get("objects", []) if o.get("featureHash") in objects
            ]
        if classifications is not None:
            result["classifications"] = [
                c
                for c in frame.get("classifications", [])
                if c.get("featureHash") in classifications
            ]
        return result

    if objects is None and classifications is None:
        return labels
    if kind == "image":
        return keep(labels)
    return {frame: keep(value) for frame, value in labels.items()}


def _object_hashes(labels: dict[str, Any], kind: str) -> set[str]:
    frames = [labels] if kind == "image" else list(labels.values())
    return {o.get("objectHash") for f in frames for o in f.get("objects", [])}
