"""5. Peak memory of the consumer processing media.

Each case is one fresh interpreter (``worker consume``) running the real consumer handler on real
producer envelopes, reporting its peak RSS (``ru_maxrss``): a batch of 1080p images whose function
takes the frame through ``dep_single_frame``, and a 1080p video streamed through
``dep_video_iterator``, once long and once short. The video figures should match: frames are
decoded one at a time, so memory does not grow with the length. The worker also reports how many
images and frames the function saw, so a run that skipped work cannot pass.
"""

from __future__ import annotations

from typing import Any

from infra.bench.common import (
    BenchContext,
    BenchError,
    Step,
    project_spec,
    receive_events,
    run_worker,
    worker_env,
)
from infra.bench.results import Row, Target

SECTION = "5 memory"
MEMORY_TARGET = Target("max", 300.0, "MB")


def _consume(
    ctx: BenchContext,
    spec: dict[str, Any],
    agent: str,
    count: int,
    batch: int,
    step: Step,
    what: str,
) -> dict[str, Any]:
    with ctx.stack(spec, f"infra.bench.agents_vision:{agent}") as stack:
        assert stack.seeded is not None
        step(f"memory: rendering {what} in the emulator (cached on disk after the first run)")
        ctx.emulator.prepare_media(stack.seeded.data_hashes)
        stack.producer_tick()
        events = receive_events(stack, count, batch)
        step(f"memory: consumer handler on {what} (fresh interpreter)")
        result = run_worker(
            "consume",
            {"events": events, "report": "infra.bench.agents_vision:seen"},
            env=worker_env(),
            timeout=600,
        )
    if any(i["failures"] for i in result["invocations"]):
        raise BenchError(f"the consumer failed records of {what}: {result['invocations']}")
    return result


def run(ctx: BenchContext, step: Step) -> list[Row]:
    options = ctx.options
    width, height = options.image_width, options.image_height
    images = options.image_count
    image_what = f"a batch of {images} {width}x{height} images"
    image = _consume(
        ctx,
        project_spec("bench memory images", images, width=width, height=height),
        "image_frame",
        images,
        images,
        step,
        image_what,
    )
    if image["report"]["images"] != images:
        raise BenchError(f"the function saw {image['report']['images']} of {images} images")

    videos: dict[float, dict[str, Any]] = {}
    for seconds in (options.video_seconds, options.short_video_seconds):
        what = f"a {seconds:g} s {options.video_width}x{options.video_height} video"
        spec = project_spec(
            f"bench memory video {seconds:g}s",
            1,
            kind="video",
            width=options.video_width,
            height=options.video_height,
            fps=options.video_fps,
            duration=seconds,
        )
        result = _consume(ctx, spec, "video_frames", 1, 1, step, what)
        expected = round(seconds * options.video_fps)
        frames = result["report"]["frames"]
        if abs(frames - expected) > 1:
            raise BenchError(f"the function decoded {frames} frames of the {what}, not {expected}")
        videos[seconds] = result

    long, short = videos[options.video_seconds], videos[options.short_video_seconds]
    video_label = f"{options.video_width}x{options.video_height} {options.video_fps:g} fps"
    return [
        Row(
            section=SECTION,
            key="memory.images_batch",
            metric=f"Peak RSS, batch of {images} {width}x{height} images (dep_single_frame)",
            unit="MB",
            kit=image["peak_rss_mb"],
            target=MEMORY_TARGET,
            note="whole consumer process: interpreter, SDK, numpy, OpenCV, one batch",
            details={"invocations": image["invocations"], "seen": image["report"]},
        ),
        Row(
            section=SECTION,
            key="memory.video_long",
            metric=f"Peak RSS, {options.video_seconds:g} s {video_label} video "
            "(dep_video_iterator)",
            unit="MB",
            kit=long["peak_rss_mb"],
            baseline=short["peak_rss_mb"],
            baseline_label=f"the same for a {options.short_video_seconds:g} s video",
            target=MEMORY_TARGET,
            note=f"{long['report']['frames']} frames decoded one at a time; a ratio near 1 "
            "means memory does not grow with the length",
            details={
                "long": {"invocations": long["invocations"], "seen": long["report"]},
                "short": {
                    "invocations": short["invocations"],
                    "seen": short["report"],
                    "peak_rss_mb": short["peak_rss_mb"],
                },
            },
        ),
    ]
