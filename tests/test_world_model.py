"""The shipped demo-world model, regression-tested on what it means: the colour asked for, sound on the bounces,
a given first frame kept, an extension joining without a jump. A quick subset of benchmarks/world_eval.py, with margins well under the figures the
shipped checkpoint measures (docs/world_model.md), so a better checkpoint passes and a broken one does not."""

from __future__ import annotations

import pytest

from kinema.backends.world import WorldBackend
from kinema.world import evaluate as E
from kinema.world.render import render

# Fixed cases from the evaluation's own list (seen combinations), so the figures are comparable with its table.
CASES = E.cases(8, 0)


@pytest.fixture(scope="module")
def world():
    backend = WorldBackend()
    if not backend.status().ready:
        pytest.fail(f"the shipped world model does not load: {backend.status().detail}")
    return E.KinemaSource("trained", backend)


@pytest.fixture(scope="module")
def made(world):
    return [world.text(case) for case in CASES]


@pytest.fixture(scope="module")
def scored(made):
    return [E.score_text(case, clip) for case, clip in zip(CASES, made, strict=True)]


def test_the_ball_has_the_colour_the_prompt_asks_for(scored):
    right = sum(r["colour"] for r in scored)
    assert right >= 4, f"the ball's colour matched the prompt in {right} of {len(scored)} clips"


def test_the_room_matches_the_prompt(scored):
    floors = sum(r["floor"] for r in scored)
    sizes = sum(r["size"] for r in scored)
    assert floors >= 6 and sizes >= 6, f"floor right in {floors}, size right in {sizes} of {len(scored)} clips"


def test_bounces_are_heard_when_they_happen(scored):
    contacts = sum(r["contacts"] for r in scored)
    in_sync = sum(r["contacts_in_sync"] for r in scored)
    onsets = sum(r["onsets"] for r in scored)
    lonely = sum(r["lonely_onsets"] for r in scored)
    assert contacts >= 8, f"only {contacts} bounces seen in {len(scored)} clips"
    assert in_sync >= 0.4 * contacts, f"{in_sync} of {contacts} bounces have a sound within a frame"
    assert lonely <= 0.6 * max(onsets, 1), f"{lonely} of {onsets} sounds have no bounce"


def test_image_to_video_keeps_the_first_frame(world):
    for case in CASES[:2]:
        first = render(case.scene, fps=E.FPS, seconds=E.CLIP_SECONDS, sample_rate=E.SAMPLE_RATE).frames[0]
        score = E.score_image(case, first, world.image(case, first))
        # The evaluation's target is 25 dB on average (the shipped model: 28 dB over 5 cases, the lowest 22);
        # random weights give ~13 dB. A regression below 20 dB means the given frame is no longer kept.
        assert score["psnr"] >= 20, f"frame 0 of an image-to-video clip is {score['psnr']:.1f} dB from the image"


def test_an_extension_joins_the_clip_without_a_jump(world, made):
    for case, clip in list(zip(CASES, made, strict=True))[:2]:
        longer, seam = world.extend(case, clip)
        score = E.score_extend(longer, seam)
        # Without carrying the tone over (kinema.extend.carry_tone) the seam jumped 2-4x the motion around it.
        assert score["seam_ok"], (
            f"the picture changes by {score['seam_change']:.1f} grey levels at the seam,"
            f" the most around it is {score['largest_change_around']:.1f}; sound gap {score['audio_gap_s']:.3f} s"
        )
