"""Fixture specs (Python or JSON) and seeding them into the state.

A fixture describes one project (and optionally a "twin" project on the same data): the ontology,
the workflow, groups of generated media with the stage their tasks start in, client metadata,
priorities and pre-existing labels. ``basic`` and ``demo`` are built in; any other fixture is a JSON
file with the fields of ``FixtureSpec`` (see fixtures/example.json and README.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.emulator.media import OTHER_MIMES, MediaKind, MediaSpec
from infra.emulator.model import DEFAULT_PRIORITY, Pathway, Stage, Workflow, utcnow
from infra.emulator.state import EmulatorState

FIXTURE_DIR = Path(__file__).parent / "fixtures"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathwaySpec(_Spec):
    name: str
    to: str = Field(description="title of the destination stage")
    uuid: str | None = None


class StageSpec(_Spec):
    title: str
    type: Literal["AGENT", "ANNOTATION", "REVIEW", "DONE"]
    uuid: str | None = None
    pathways: list[PathwaySpec] = Field(default_factory=list, description="AGENT stages")
    to: str | None = Field(default=None, description="ANNOTATION: where SUBMIT goes")
    approve: str | None = Field(default=None, description="REVIEW: where APPROVE goes")
    reject: str | None = Field(default=None, description="REVIEW: where REJECT goes")


class WorkflowSpec(_Spec):
    start: str = Field(description="title of the stage the START node leads to")
    stages: list[StageSpec]

    @model_validator(mode="after")
    def _check_edges(self) -> WorkflowSpec:
        titles = [s.title for s in self.stages]
        if len(set(titles)) != len(titles):
            raise ValueError("stage titles must be unique")
        known = set(titles)
        edges = [("start", self.start)]
        for stage in self.stages:
            edges += [(f"{stage.title}.{p.name}", p.to) for p in stage.pathways]
            edges += [
                (f"{stage.title}.{k}", v)
                for k, v in (("to", stage.to), ("approve", stage.approve), ("reject", stage.reject))
                if v
            ]
            if stage.type == "AGENT" and not stage.pathways:
                raise ValueError(f"agent stage {stage.title!r} needs at least one pathway")
            if stage.type != "AGENT" and stage.pathways:
                raise ValueError(f"only agent stages have pathways ({stage.title!r})")
        for origin, target in edges:
            if target not in known:
                raise ValueError(f"{origin} points to unknown stage {target!r}")
        return self


class ObjectSpec(_Spec):
    name: str
    shape: Literal["bounding_box", "polygon", "point", "polyline", "rotatable_bounding_box"]
    feature_hash: str | None = Field(default=None, description="fixed feature node hash")


class ClassificationSpec(_Spec):
    name: str
    options: list[str] = Field(min_length=1)


class OntologySpec(_Spec):
    title: str = "Emulator ontology"
    objects: list[ObjectSpec] = Field(
        default_factory=lambda: [
            ObjectSpec(name="Box", shape="bounding_box"),
            ObjectSpec(name="Outline", shape="polygon"),
        ]
    )
    classifications: list[ClassificationSpec] = Field(
        default_factory=lambda: [ClassificationSpec(name="Quality", options=["good", "bad"])]
    )


class MediaGroupSpec(_Spec):
    """``count`` generated items of one kind, whose tasks start in ``stage``."""

    kind: MediaKind = "image"
    count: int = Field(default=1, ge=0)
    images: int = Field(default=3, ge=1, le=100, description="images of an image group")
    pages: int = Field(default=2, ge=1, le=100, description="pages of a pdf")
    width: int = Field(default=320, ge=8, le=8192)
    height: int = Field(default=240, ge=8, le=8192)
    fps: float = Field(default=10.0, gt=0)
    duration: float = Field(default=3.0, gt=0, description="video length in seconds")
    mime: str | None = None
    title: str = Field(default="{kind}_{index:04d}", description="format string: kind, index, n")
    stage: str | None = Field(default=None, description="stage title; default: the start stage")
    twin_stage: str | None = Field(default=None, description="stage in the twin project")
    priority: float = Field(default=DEFAULT_PRIORITY, ge=0, le=1)
    client_metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="copied to every item; string values are formatted like title",
    )
    prelabelled: int = Field(
        default=0, ge=0, description="first N items get a box and a classification"
    )


class TwinSpec(_Spec):
    title: str | None = None
    workflow: WorkflowSpec | None = None
    stage: str | None = Field(default=None, description="where the twin's tasks start")


class FixtureSpec(_Spec):
    title: str = "Emulated project"
    description: str = ""
    dataset_title: str | None = None
    ontology: OntologySpec = Field(default_factory=OntologySpec)
    workflow: WorkflowSpec
    media: list[MediaGroupSpec] = Field(default_factory=lambda: [MediaGroupSpec(count=20)])
    twin: TwinSpec | None = None

    @classmethod
    def load(cls, source: str | Path | FixtureSpec | dict[str, Any]) -> FixtureSpec:
        """A built-in name (``basic``, ``demo``), a JSON file path, a dict or a spec."""
        if isinstance(source, FixtureSpec):
            return source
        if isinstance(source, dict):
            return cls._validate(source, "fixture dict")
        if isinstance(source, str) and source in BUILTIN:
            return BUILTIN[source]()
        path = Path(source)
        if not path.exists() and (FIXTURE_DIR / f"{source}.json").exists():
            path = FIXTURE_DIR / f"{source}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(
                f"Fixture {str(source)!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file."
            ) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"Fixture file {path} is not valid JSON: {exc}") from None
        return cls._validate(data, str(path))

    @classmethod
    def _validate(cls, data: Any, where: str) -> FixtureSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"Invalid fixture {where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Built-in fixtures
# ---------------------------------------------------------------------------------------------
def basic_spec() -> FixtureSpec:
    """START -> agent "Agent 1" -(complete)-> "Complete"; 20 images in "Agent 1"; a twin project."""
    return FixtureSpec(
        title="Basic agent project",
        workflow=WorkflowSpec(
            start="Agent 1",
            stages=[
                StageSpec(
                    title="Agent 1",
                    type="AGENT",
                    pathways=[PathwaySpec(name="complete", to="Complete")],
                ),
                StageSpec(title="Complete", type="DONE"),
            ],
        ),
        media=[
            MediaGroupSpec(
                kind="image",
                count=20,
                title="image_{index:04d}.jpg",
                client_metadata={"index": "{index}", "source": "basic"},
            )
        ],
        twin=TwinSpec(title="Basic agent project (twin)"),
    )


def demo_workflow() -> WorkflowSpec:
    return WorkflowSpec(
        start="pre-label",
        stages=[
            StageSpec(
                title="pre-label",
                type="AGENT",
                pathways=[
                    PathwaySpec(name="annotate", to="Annotate"),
                    PathwaySpec(name="skip", to="Complete"),
                ],
            ),
            StageSpec(title="Annotate", type="ANNOTATION", to="Review"),
            StageSpec(title="Review", type="REVIEW", approve="quality-check", reject="Annotate"),
            StageSpec(
                title="quality-check",
                type="AGENT",
                pathways=[
                    PathwaySpec(name="accept", to="Complete"),
                    PathwaySpec(name="reject", to="Annotate"),
                ],
            ),
            StageSpec(title="Complete", type="DONE"),
        ],
    )


def demo_spec() -> FixtureSpec:
    """300 small images and 10 short videos across two agent stages; see README.md."""
    return FixtureSpec(
        title="Demo project",
        workflow=demo_workflow(),
        media=[
            MediaGroupSpec(
                kind="image",
                count=250,
                title="frame_{index:04d}.jpg",
                stage="pre-label",
                client_metadata={"camera": "cam-{index}", "batch": "a"},
            ),
            MediaGroupSpec(
                kind="image",
                count=50,
                title="qc_{index:04d}.jpg",
                stage="quality-check",
                client_metadata={"camera": "cam-{index}", "batch": "b"},
                prelabelled=50,
            ),
            MediaGroupSpec(
                kind="video",
                count=8,
                fps=10,
                duration=3.0,
                title="clip_{index:02d}.mp4",
                stage="pre-label",
            ),
            MediaGroupSpec(
                kind="video",
                count=2,
                fps=10,
                duration=3.0,
                title="qc_clip_{index:02d}.mp4",
                stage="quality-check",
                prelabelled=2,
            ),
        ],
        twin=TwinSpec(title="Demo project (twin)", stage="pre-label"),
    )


BUILTIN = {"basic": basic_spec, "demo": demo_spec}


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------
@dataclass
class SeededProject:
    project_hash: str
    stage_uuids: dict[str, str]  # stage title -> uuid
    pathway_uuids: dict[str, dict[str, str]]  # agent stage title -> {pathway name -> uuid}
    task_uuids: dict[str, list[str]]  # stage title -> task uuids seeded there
    task_by_data: dict[str, str]  # data hash -> task uuid


@dataclass
class SeededFixture:
    """What ``Emulator.seed`` created. The main project's fields are at the top level."""

    project_hash: str
    ontology_hash: str
    dataset_hash: str
    stage_uuids: dict[str, str]
    pathway_uuids: dict[str, dict[str, str]]
    task_uuids: dict[str, list[str]]
    task_by_data: dict[str, str]
    data_hashes: list[str]
    storage_item_uuids: dict[str, str]  # data hash -> backing storage item uuid
    label_hashes: dict[str, str]  # data hash -> label hash, for pre-labelled data
    twin: SeededProject | None = None
    projects: list[str] = field(default_factory=list)

    @property
    def twin_project_hash(self) -> str | None:
        return self.twin.project_hash if self.twin else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["twin_project_hash"] = self.twin_project_hash
        return data


def build_ontology_structure(spec: OntologySpec, state: EmulatorState) -> dict[str, Any]:
    """The ontology ``editor`` dict, built with the SDK itself so that it always parses."""
    from encord.objects import Classification, OntologyStructure, RadioAttribute, Shape

    structure = OntologyStructure()
    for index, obj in enumerate(spec.objects, start=1):
        structure.add_object(
            name=obj.name,
            shape=Shape(obj.shape),
            uid=index,
            feature_node_hash=obj.feature_hash or state.new_uuid()[:8],
        )
    for index, cls_spec in enumerate(spec.classifications, start=1):
        classification: Classification = structure.add_classification(
            uid=index, feature_node_hash=state.new_uuid()[:8]
        )
        radio = classification.add_attribute(
            RadioAttribute, cls_spec.name, feature_node_hash=state.new_uuid()[:8], required=False
        )
        for option in cls_spec.options:
            radio.add_option(option, feature_node_hash=state.new_uuid()[:8])
    result: dict[str, Any] = structure.to_dict()
    return result


def _workflow(spec: WorkflowSpec, state: EmulatorState) -> Workflow:
    uuids = {s.title: (s.uuid or state.new_uuid()).lower() for s in spec.stages}
    stages = []
    for s in spec.stages:
        stages.append(
            Stage(
                uuid=uuids[s.title],
                title=s.title,
                stage_type=s.type,
                pathways=[
                    Pathway((p.uuid or state.new_uuid()).lower(), p.name, uuids[p.to])
                    for p in s.pathways
                ],
                next_uuid=uuids[s.to] if s.to else None,
                approve_uuid=uuids[s.approve] if s.approve else None,
                reject_uuid=uuids[s.reject] if s.reject else None,
            )
        )
    return Workflow(
        uuid=state.new_uuid(),
        start_uuid=state.new_uuid(),
        first_stage_uuid=uuids[spec.start],
        stages=stages,
    )


def _format(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"cannot format {template!r}; available: {sorted(values)}") from None


def _prelabel(
    state: EmulatorState, structure: dict[str, Any], spec: MediaSpec, index: int
) -> dict[str, Any]:
    """Label row content with one bounding box (every frame of a video) and one classification."""
    if spec.kind not in ("image", "video", "image_sequence"):
        raise ValueError(f"prelabelled is supported for images and videos, not {spec.kind}")
    objects = structure.get("objects") or []
    classifications = structure.get("classifications") or []
    now = utcnow().strftime("%a, %d %b %Y %H:%M:%S UTC")
    result: dict[str, Any] = {"object_answers": {}, "classification_answers": {}, "unit_labels": {}}
    frame_objects: list[dict[str, Any]] = []
    box = next((o for o in objects if o["shape"] == "bounding_box"), None)
    if box is not None:
        object_hash = state.new_uuid()[:8]
        x, y = 0.1 + 0.05 * (index % 5), 0.1 + 0.04 * (index % 7)
        frame_objects.append(
            {
                "name": box["name"],
                "color": box["color"],
                "shape": "bounding_box",
                "value": box["name"].lower().replace(" ", "_"),
                "createdAt": now,
                "createdBy": "emulator@agentkit.local",
                "confidence": 1.0,
                "objectHash": object_hash,
                "featureHash": box["featureNodeHash"],
                "manualAnnotation": True,
                "lastEditedAt": now,
                "boundingBox": {"x": round(x, 4), "y": round(y, 4), "w": 0.3, "h": 0.25},
            }
        )
        result["object_answers"][object_hash] = {"objectHash": object_hash, "classifications": []}
    # Current SDKs keep classifications only in classification_answers (with their frame range).
    if classifications:
        cls = classifications[0]
        attribute = cls["attributes"][0]
        option = attribute["options"][index % len(attribute["options"])]
        classification_hash = state.new_uuid()[:8]
        result["classification_answers"][classification_hash] = {
            "classificationHash": classification_hash,
            "featureHash": cls["featureNodeHash"],
            "classifications": [
                {
                    "name": attribute["name"],
                    "value": attribute["name"].lower(),
                    "answers": [
                        {
                            "name": option["label"],
                            "value": option["value"],
                            "featureHash": option["featureNodeHash"],
                        }
                    ],
                    "featureHash": attribute["featureNodeHash"],
                    "manualAnnotation": True,
                }
            ],
            "spaces": {},
            "range": [[0, spec.frames - 1]],
            "createdBy": "emulator@agentkit.local",
            "createdAt": now,
            "lastEditedBy": "emulator@agentkit.local",
            "lastEditedAt": now,
            "manualAnnotation": True,
        }
    if spec.kind == "image":
        result["unit_labels"] = {"objects": frame_objects, "classifications": []}
    else:
        result["unit_labels"] = {
            str(frame): {"objects": [dict(o) for o in frame_objects], "classifications": []}
            for frame in range(spec.frames)
        }
    return result


def seed(state: EmulatorState, source: str | Path | FixtureSpec | dict[str, Any]) -> SeededFixture:
    """Create the fixture's ontology, dataset, data, project(s), tasks and labels in ``state``."""
    spec = FixtureSpec.load(source)
    main_workflow = _workflow(spec.workflow, state)
    twin_workflow = _workflow((spec.twin.workflow or spec.workflow), state) if spec.twin else None
    for group in spec.media:
        for stage_title in (group.stage, group.twin_stage):
            if (
                stage_title
                and main_workflow.stage(stage_title) is None
                and (twin_workflow is None or twin_workflow.stage(stage_title) is None)
            ):
                raise ValueError(
                    f"media group stage {stage_title!r} is not a stage of the workflow"
                )

    structure = build_ontology_structure(spec.ontology, state)
    ontology = state.add_ontology(spec.ontology.title, structure)
    dataset = state.add_dataset(spec.dataset_title or f"{spec.title} data")

    placed: list[tuple[str, MediaGroupSpec, MediaSpec, int]] = []
    item_uuids: dict[str, str] = {}  # data hash -> the storage item behind it
    counter = 0
    for group in spec.media:
        for index in range(group.count):
            counter += 1
            if group.kind == "image":
                media = MediaSpec(
                    "image", group.width, group.height, state.new_seed(), group.mime or "image/jpeg"
                )
            elif group.kind in OTHER_MIMES or group.kind == "image_group":
                media = MediaSpec(
                    group.kind,
                    group.width,
                    group.height,
                    state.new_seed(),
                    OTHER_MIMES.get(group.kind, ""),
                    frames={"image_group": group.images, "pdf": group.pages}.get(group.kind, 1),
                )
            else:
                frames = max(1, round(group.fps * group.duration))
                media = MediaSpec(
                    group.kind,
                    group.width,
                    group.height,
                    state.new_seed(),
                    group.mime or "video/mp4",
                    fps=group.fps,
                    frames=frames,
                )
            values = {"kind": group.kind, "index": index, "n": counter}
            title = _format(group.title, **values)
            metadata = {
                k: _format(v, **values) if isinstance(v, str) else v
                for k, v in group.client_metadata.items()
            }
            unit = state.add_data(dataset.dataset_hash, title, media, metadata)
            placed.append((unit.data_hash, group, media, index))
            item_uuids[unit.data_hash] = unit.item_uuid

    project = state.add_project(
        title=spec.title,
        description=spec.description,
        ontology_hash=ontology.ontology_hash,
        workflow=main_workflow,
        dataset_hashes=[dataset.dataset_hash],
    )
    main = _seed_project(state, project.project_hash, placed, structure, twin=False)
    label_hashes = {
        data_hash: row.label_hash
        for data_hash, row in state.project(project.project_hash).label_rows.items()
    }

    twin_seeded = None
    if spec.twin is not None and twin_workflow is not None:
        twin_project = state.add_project(
            title=spec.twin.title or f"{spec.title} (twin)",
            description=spec.description,
            ontology_hash=ontology.ontology_hash,
            workflow=twin_workflow,
            dataset_hashes=[dataset.dataset_hash],
            twin_of=project.project_hash,
        )
        default_stage = spec.twin.stage
        twin_placed = [
            (
                h,
                g.model_copy(
                    update={"stage": g.twin_stage or default_stage or None, "prelabelled": 0}
                ),
                m,
                i,
            )
            for h, g, m, i in placed
        ]
        twin_seeded = _seed_project(
            state, twin_project.project_hash, twin_placed, structure, twin=True
        )

    return SeededFixture(
        project_hash=project.project_hash,
        ontology_hash=ontology.ontology_hash,
        dataset_hash=dataset.dataset_hash,
        stage_uuids=main.stage_uuids,
        pathway_uuids=main.pathway_uuids,
        task_uuids=main.task_uuids,
        task_by_data=main.task_by_data,
        data_hashes=[h for h, *_ in placed],
        storage_item_uuids=item_uuids,
        label_hashes=label_hashes,
        twin=twin_seeded,
        projects=[project.project_hash] + ([twin_seeded.project_hash] if twin_seeded else []),
    )


def _seed_project(
    state: EmulatorState,
    project_hash: str,
    placed: list[tuple[str, MediaGroupSpec, MediaSpec, int]],
    structure: dict[str, Any],
    *,
    twin: bool,
) -> SeededProject:
    workflow = state.project(project_hash).workflow
    first = workflow.stage(workflow.first_stage_uuid)
    assert first is not None
    task_uuids: dict[str, list[str]] = {s.title: [] for s in workflow.stages}
    task_by_data: dict[str, str] = {}
    for data_hash, group, media, index in placed:
        stage = workflow.stage(group.stage) if group.stage else first
        if stage is None:
            if not twin:
                raise ValueError(f"stage {group.stage!r} is not in the workflow")
            stage = first
        task = state.add_task(project_hash, data_hash, stage.uuid, priority=group.priority)
        task_uuids[stage.title].append(task.uuid)
        task_by_data[data_hash] = task.uuid
        if index < group.prelabelled:
            labels = _prelabel(state, structure, media, index)
            state.add_label_row(project_hash, data_hash, **labels)
    return SeededProject(
        project_hash=project_hash,
        stage_uuids={s.title: s.uuid for s in workflow.stages},
        pathway_uuids={
            s.title: {p.name: p.uuid for p in s.pathways} for s in workflow.stages if s.pathways
        },
        task_uuids=task_uuids,
        task_by_data=task_by_data,
    )
