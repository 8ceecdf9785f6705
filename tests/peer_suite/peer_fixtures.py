"""The constants of encord-agents' ``tests/fixtures.py``, for the restated peer suite.

The peer's tests run against Encord projects created from a fixed ontology, dataset and workflow
template; here the same shapes are seeded in the emulator (see conftest.py). Only values the
tests compare are fixed; everything else is generated.
"""

AGENT_STAGE_NAME = "Agent 1"
COMPLETE_STAGE_NAME = "Complete"
AGENT_TO_COMPLETE_PATHWAY_HASH = "49a786f3-5edf-4b94-aff0-3da9042d3bf0"
AGENT_TO_COMPLETE_PATHWAY_NAME = "complete"
BBOX_ONTOLOGY_HASH = "PXFZO2ra"

# Emulator routes counted where the peer counts calls of the SDK method named after them.
SAVE_LABEL_ROWS = "RPC labelrow.POST"
LIST_LABEL_ROWS = "RPC labelrowmetadata.GET"
WORKFLOW_SET_PRIORITY = "POST /v2/public/projects/{project_hash}/priorities"
STORAGE_GET_ITEM = "GET /v2/public/storage/items/{item_uuid}"
STORAGE_GET_ITEMS = "POST /v2/public/storage/items/get-bulk"

WORKFLOW = {
    "start": AGENT_STAGE_NAME,
    "stages": [
        {
            "title": AGENT_STAGE_NAME,
            "type": "AGENT",
            "pathways": [
                {
                    "name": AGENT_TO_COMPLETE_PATHWAY_NAME,
                    "to": COMPLETE_STAGE_NAME,
                    "uuid": AGENT_TO_COMPLETE_PATHWAY_HASH,
                }
            ],
        },
        {"title": COMPLETE_STAGE_NAME, "type": "DONE"},
    ],
}
ONTOLOGY = {
    "objects": [
        {"name": "Box", "shape": "bounding_box", "feature_hash": BBOX_ONTOLOGY_HASH},
        {"name": "Outline", "shape": "polygon"},
    ],
    "classifications": [{"name": "Quality", "options": ["good", "bad"]}],
}
SMALL = {"width": 64, "height": 48}
# The peer's "one of each" dataset: image, image group, pdf, audio, text, video and image
# sequence (its data group of audio and text is not emulated).
ONE_OF_EACH_MEDIA = [
    {"kind": "image", "count": 1, "title": "image.jpg", **SMALL},
    {"kind": "image_group", "count": 1, "title": "image_group", "images": 3, **SMALL},
    {"kind": "pdf", "count": 1, "title": "document.pdf", "pages": 2},
    {"kind": "audio", "count": 1, "title": "audio.mp3"},
    {"kind": "text", "count": 1, "title": "text.txt"},
    {"kind": "video", "count": 1, "title": "video.mp4", "duration": 3.0, **SMALL},
    # After the video: the emulator labels an image sequence like a video, and the peer's tests
    # take the first video-typed label row for the video.
    {"kind": "image_sequence", "count": 1, "title": "image_sequence", "duration": 1.0, **SMALL},
]
# The peer's dataset has 520 small images; 300 here. Its
# test_runner_storage_item_dependency_resolved_once expects one storage-item request per run, which
# is one per batch of the default 300 tasks: with 520 tasks the peer's runner, like ours, makes two.
IMAGES_520_MEDIA = [{"kind": "image", "count": 300, "title": "image_{index:04d}.jpg", **SMALL}]


def project_spec(media: list[dict[str, object]], title: str) -> dict[str, object]:
    """A fixture spec: the peer's ontology and workflow template over ``media``."""
    return {"title": title, "ontology": ONTOLOGY, "workflow": WORKFLOW, "media": media}
