"""Provenance on every saved clip: signed C2PA manifest, invisible watermark, `kinema verify`."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import av
import c2pa
import numpy as np
import pytest
from click.testing import CliRunner

import kinema
from kinema.cli import cli
from kinema.errors import OutputError
from kinema.media import files, provenance, temps, watermark


def tiny_clip(size=32, seconds=0.4):
    return kinema.generate(
        kinema.GenerationRequest(
            "a red fox in snow", seconds=seconds, width=size, height=size, seed=3, steps=2, backend="tiny-ltx2"
        )
    )


def reencode(path, out, *, crf=None, scale=1.0):
    """Re-encode the video as a user's editor would: PyAV, H.264, another quality and/or size."""
    with av.open(str(path)) as source, av.open(str(out), "w") as target:
        vin = source.streams.video[0]
        width, height = (round(vin.width * scale / 2) * 2, round(vin.height * scale / 2) * 2)
        vout = target.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        if crf is not None:  # quality-targeted: on a few frames x264's bitrate mode overshoots its target
            vout.options = {"crf": str(crf)}
        for index, frame in enumerate(source.decode(vin)):
            frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")
            frame.pts, frame.time_base = index, 1 / vin.average_rate
            target.mux(vout.encode(frame))
        target.mux(vout.encode(None))
    return out


def video_bit_rate(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sizes = [p.size for p in container.demux(stream) if p.size]
        return sum(sizes) * 8 * float(stream.average_rate) / len(sizes)


def test_a_saved_clip_carries_a_valid_signed_manifest(tmp_path, kinema_env):
    clip = tiny_clip()
    clip.metadata["cameos"] = ["astro"]
    path = clip.save(tmp_path / "fox.mp4")

    with c2pa.Reader(str(path)) as reader:  # c2pa's own reader, default settings
        assert reader.get_validation_state() in ("Valid", "Trusted")
        failures = reader.get_validation_results()["activeManifest"].get("failure", [])
        assert [f["code"] for f in failures] in ([], ["signingCredential.untrusted"])  # a private CA, not a public one
        manifest = reader.get_active_manifest()
    created = manifest["assertions"][[a["label"] for a in manifest["assertions"]].index("c2pa.actions.v2")]
    action = created["data"]["actions"][0]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    generation = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.kinema.generation")
    import hashlib

    assert generation["prompt_sha256"] == hashlib.sha256(b"a red fox in snow").hexdigest()
    assert (generation["backend"], generation["model"], generation["seed"]) == ("tiny-ltx2", "kinema/tiny-ltx2", 3)
    assert generation["kinema_version"] == kinema.__version__ and generation["cameos"] == ["astro"]
    assert generation["clip_id"] == clip.metadata["provenance"]["clip_id"]
    assert manifest["signature_info"]["common_name"].startswith("kinema on ")

    # The file still plays and keeps kinema's metadata, which records what was done.
    loaded = kinema.Clip.load(path)
    assert loaded.frames.shape == clip.frames.shape
    assert loaded.metadata["provenance"]["c2pa"] == "signed"
    assert loaded.metadata["provenance"]["watermark"]["status"] == "skipped"  # 32x32 is below the minimum


def test_a_byte_edited_file_fails_validation(tmp_path):
    path = tiny_clip().save(tmp_path / "fox.mp4")
    data = bytearray(path.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0x01  # one bit of the picture
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(bytes(data))

    with c2pa.Reader(str(edited)) as reader:
        assert reader.get_validation_state() == "Invalid"
    report = provenance.verify(edited)
    assert report.manifest == "invalid" and any("bmffHash.mismatch" in p for p in report.problems)


def test_watermark_survives_reencoding_and_resizing(tmp_path):
    clip = tiny_clip(size=256)  # a real generated clip, big enough to carry the mark
    marked = clip.save(tmp_path / "marked.mp4")
    clip_id = clip.metadata["provenance"]["clip_id"]
    assert clip.metadata["provenance"]["watermark"] == {"status": "embedded", "payload": clip_id}
    assert watermark.read_file(marked).clip_id == clip_id

    lower = reencode(marked, tmp_path / "lower.mp4", crf=30)  # kinema writes crf 18
    smaller = reencode(marked, tmp_path / "smaller.mp4", scale=0.75)
    assert video_bit_rate(lower) < video_bit_rate(marked) / 2
    assert files.probe(smaller).width == 192
    for copy in (lower, smaller):
        reading = watermark.read_file(copy)
        assert reading.detected and reading.clip_id == clip_id, (copy.name, reading)
        report = provenance.verify(copy)  # re-encoding strips the manifest; the mark still names the clip
        assert report.manifest == "missing" and report.exit_code == 3 and report.watermark["clip_id"] == clip_id

    plain = clip.save(tmp_path / "plain.mp4", provenance=False)
    for copy in (plain, reencode(plain, tmp_path / "plain-smaller.mp4", scale=0.75)):
        assert not watermark.read_file(copy).detected


def test_the_default_models_64_px_clips_carry_the_mark_through_crf_30_and_half_size(tmp_path, monkeypatch):
    # The default backend's own size (64x64) gets the small layout; README's figures come from the demo world's clips.
    # After x0.5 about 1 clip id in 5 is lost (README), so a fixed id keeps this test from failing by chance.
    monkeypatch.setattr(watermark, "new_clip_id", lambda: "5ca1ab1e00")
    clip = kinema.generate(kinema.GenerationRequest("a red fox in snow", seed=3, steps=2))
    assert (clip.width, clip.height) == (64, 64)
    marked = clip.save(tmp_path / "marked.mp4")
    clip_id = clip.metadata["provenance"]["clip_id"]
    assert clip.metadata["provenance"]["watermark"] == {"status": "embedded", "payload": clip_id}
    lower = reencode(marked, tmp_path / "lower.mp4", crf=30)
    half = reencode(marked, tmp_path / "half.mp4", scale=0.5)
    assert files.probe(half).width == 32
    for copy in (marked, lower, half):
        reading = watermark.read_file(copy)
        assert reading.detected and reading.clip_id == clip_id, (copy.name, reading)
    plain = clip.save(tmp_path / "plain.mp4", provenance=False)
    for copy in (plain, reencode(plain, tmp_path / "plain-half.mp4", scale=0.5)):
        assert not watermark.read_file(copy).detected


def test_watermark_keeps_frames_close_and_reads_from_arrays():
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(128, 30, (3, 144, 176, 3)), 0, 255).astype(np.uint8)
    marked = watermark.embed(frames, "0123456789")
    difference = marked.astype(float) - frames
    assert 10 * np.log10(255**2 / np.mean(difference**2)) > 36  # PSNR in dB
    assert watermark.read(marked).clip_id == "0123456789"
    assert not watermark.read(frames).detected
    with pytest.raises(ValueError, match="minimum side is 64"):
        watermark.embed(frames[:, :50], "0123456789")
    with pytest.raises(ValueError, match="10 hex digits"):
        watermark.embed(frames, "not-hex")


def test_kinema_verify_exit_codes(tmp_path):
    clip = tiny_clip()
    signed = clip.save(tmp_path / "signed.mp4")
    unsigned = clip.save(tmp_path / "unsigned.mp4", provenance=False)
    data = bytearray(signed.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0x01
    (tmp_path / "edited.mp4").write_bytes(bytes(data))
    runner = CliRunner()

    result = runner.invoke(cli, ["verify", str(signed)])
    assert result.exit_code == 0, result.output
    assert "manifest: present and valid" in result.output and "this install" in result.output
    assert "generator: kinema" in result.output and "tiny" in result.output

    result = runner.invoke(cli, ["verify", str(tmp_path / "edited.mp4")])
    assert result.exit_code == 1 and "INVALID" in result.output

    result = runner.invoke(cli, ["verify", "--json", str(unsigned)])
    assert result.exit_code == 3
    report = json.loads(result.output)
    assert report["manifest"] == "missing" and report["provenance_off"] is True and report["ok"] is False
    assert kinema.Clip.load(unsigned).metadata["provenance"] == "off"

    assert runner.invoke(cli, ["verify", str(tmp_path / "nothing.mp4")]).exit_code == 2  # click: no such file


def test_generate_cli_can_turn_provenance_off_and_add_a_visible_mark(tmp_path):
    runner = CliRunner()
    out = tmp_path / "marked.mp4"
    result = runner.invoke(
        cli,
        [
            "generate",
            "a lighthouse",
            "--size",
            "64x64",
            "--seconds",
            "0.4",
            "--steps",
            "2",
            "--visible-mark",
            "AI",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert provenance.verify(out).ok and kinema.Clip.load(out).metadata["visible_mark"] == "AI"
    off = tmp_path / "off.mp4"
    result = runner.invoke(
        cli,
        [
            "generate",
            "a lighthouse",
            "--size",
            "64x64",
            "--seconds",
            "0.4",
            "--steps",
            "2",
            "--no-provenance",
            "-o",
            str(off),
        ],
    )
    assert result.exit_code == 0, result.output
    assert provenance.verify(off).manifest == "missing"


def test_visible_mark_changes_only_the_corner():
    frames = np.full((2, 128, 128, 3), 40, np.uint8)
    from kinema.media.visible_mark import draw

    drawn = draw(frames, "AI-generated")
    changed = np.argwhere(np.any(drawn != frames, axis=(0, 3)))
    assert len(changed) and changed[:, 0].min() > 64 and changed[:, 1].min() > 32


def test_signing_key_is_private_and_reused(tmp_path, kinema_env):
    clip = tiny_clip()
    clip.save(tmp_path / "a.mp4")
    folder = kinema_env / "provenance"
    key = folder / "signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    before = key.read_bytes()
    clip.save(tmp_path / "b.mp4")
    assert key.read_bytes() == before
    assert provenance.verify(tmp_path / "a.mp4").signer == provenance.verify(tmp_path / "b.mp4").signer


def test_users_can_sign_with_their_own_certificate(tmp_path, monkeypatch):
    ca, chain, key = provenance.make_certificate_chain("Studio Example")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(ca)
    monkeypatch.setenv("KINEMA_SIGNING_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("KINEMA_SIGNING_KEY", str(tmp_path / "key.pem"))
    path = tiny_clip().save(tmp_path / "studio.mp4")
    report = provenance.verify(path)
    assert report.ok and report.signer["common_name"] == "Studio Example" and not report.signed_here
    monkeypatch.setenv("KINEMA_TRUST_ANCHORS", str(tmp_path / "ca.pem"))
    assert provenance.verify(path).signed_here


def test_a_failed_signature_leaves_no_file(tmp_path, monkeypatch):
    (tmp_path / "chain.pem").write_bytes(b"not a certificate")
    (tmp_path / "key.pem").write_bytes(provenance.make_certificate_chain("x")[2])
    monkeypatch.setenv("KINEMA_SIGNING_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("KINEMA_SIGNING_KEY", str(tmp_path / "key.pem"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputError, match="could not sign"):
        tiny_clip().save(out / "fox.mp4")
    assert os.listdir(out) == []


def test_parent_clip_is_recorded_and_embedded_as_an_ingredient(tmp_path):
    from kinema.lineage import open_source

    parent_path = tiny_clip().save(tmp_path / "parent.mp4")
    _, record = open_source(parent_path)
    child = tiny_clip()
    child.metadata.update({"kind": "extend", "parent": record})
    report = provenance.verify(child.save(tmp_path / "child.mp4"))
    assert report.ok and report.ingredients == ["parent.mp4"]
    assert report.generation["parents"][0]["sha256"] == record["sha256"]
    assert report.digital_source_type.endswith("compositeWithTrainedAlgorithmicMedia")


# A `kinema generate` that stops for good while signing: the unsigned clip is whole, the signed one just begun.
STOP_WHILE_SIGNING = """
import pathlib, sys, time
import c2pa
marker = pathlib.Path(sys.argv[1])
def stop(self, *args, **kwargs):
    marker.write_text("signing")
    time.sleep(3600)
c2pa.Builder.sign = stop
from kinema.cli import main
sys.argv = ["kinema", *sys.argv[2:]]
main()
"""


def test_kill_9_while_saving_leaves_no_playable_unsigned_clip_and_the_next_run_sweeps(tmp_path, kinema_env):
    out = tmp_path / "clips"
    out.mkdir()
    marker = tmp_path / "signing"
    args = ["generate", "a red fox in snow", "--size", "32x32", "--seconds", "0.4", "--steps", "2", "-o"]
    command = [sys.executable, "-c", STOP_WHILE_SIGNING, str(marker), *args, str(out / "fox.mp4")]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})  # no spinning threads on 2 cores
    try:
        deadline = time.monotonic() + 900  # a hang guard on a busy machine, not a speed check
        while not marker.exists():
            assert process.poll() is None, "kinema generate ended before it signed"
            assert time.monotonic() < deadline, "kinema generate never reached signing"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL

    # Beside the output: only the claimed signing temp, empty, with no playable name.
    left = list(out.iterdir())
    assert [p.name for p in left if not p.name.endswith(".kinema.part")] == []
    assert left and all(p.stat().st_size == 0 for p in left)
    # The whole unsigned clip is in a private workspace under the data directory.
    (workspace,) = (kinema_env / "tmp").glob("work-*")
    assert stat.S_IMODE(workspace.stat().st_mode) == 0o700 and (workspace / "clip.unsigned").stat().st_size > 0

    # The next run sweeps both (their owner is dead: nobody holds their locks) and signs its clip.
    again = CliRunner().invoke(cli, [*args, str(out / "fox.mp4")])
    assert again.exit_code == 0, again.output
    assert os.listdir(out) == ["fox.mp4"] and list((kinema_env / "tmp").iterdir()) == []
    assert provenance.verify(out / "fox.mp4").manifest == "valid"


def test_a_sweep_takes_only_dead_writers_temps(tmp_path):
    live, claim = temps.claim(tmp_path, "live.mp4")
    legacy = [tmp_path / ".old.mp4.0123abcd.unsigned.mp4", tmp_path / ".old.mp4.0123abcd.signed.part"]
    others = [tmp_path / ".song.mp3.0123abcd.part", tmp_path / "notes.kinema.part", tmp_path / "clip.mp4"]
    for path in [*legacy, *others]:
        path.write_bytes(b"x")
    try:
        assert sorted(temps.sweep(tmp_path)) == sorted(legacy)  # a client's download, a user's own files: kept
        assert live.exists()  # its writer (this test) still holds it
    finally:
        os.close(claim)
    assert temps.sweep(tmp_path) == [live]
    assert sorted(tmp_path.iterdir()) == sorted(others)
