"""What provenance costs: time and bytes of watermarking + C2PA signing, and how well the mark survives.

1. The tiny clip: ``clip.save`` with provenance vs ``provenance=False`` (the baseline,
   measured in the same run, interleaved), as a fraction of generate + encode.
2. Per frame at 1280x720: watermark embed/read vs H.264 encoding, and signing a 720p clip.
3. Robustness: bit errors (of 64) and detection after re-encoding and a 0.75x resize,
   on the tiny model's output and on synthetic natural-statistics pictures (1/f
   spectrum), static and panning; PSNR of the marked frames.

    python benchmarks/provenance_cost.py [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

import kinema
from kinema.media import watermark
from kinema.media.files import write_mp4


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def natural(frames: int, height: int, width: int, pan: float, seed: int) -> np.ndarray:
    """Pictures with natural-image statistics (1/f amplitude, weaker chroma) and a flat patch; optional pan."""
    rng = np.random.default_rng(seed)
    big = (height, width + int(pan * frames) + 2)
    f = np.hypot(np.fft.fftfreq(big[0])[:, None], np.fft.fftfreq(big[1])[None])
    f[0, 0] = 1
    planes = []
    for std, mean in ((45, 110), (12, 0), (12, 0)):
        spectrum = (rng.normal(size=big) + 1j * rng.normal(size=big)) / f
        spectrum[0, 0] = 0
        plane = np.real(np.fft.ifft2(spectrum))
        planes.append((plane - plane.mean()) / plane.std() * std + mean)
    picture = np.stack(planes, -1) @ watermark._YCC_TO_RGB.T
    picture[height // 3 : height // 2, width // 4 : width // 2] = (200, 40, 30)
    return np.clip(np.stack([picture[:, int(t * pan) : int(t * pan) + width] for t in range(frames)]), 0, 255).astype(
        np.uint8
    )


def reencode(frames: np.ndarray, *, crf: int, scale: float = 1.0) -> np.ndarray:
    """Through libx264 at ``crf`` (kinema writes 18), optionally resized first; back to RGB."""
    buffer = io.BytesIO()
    _, height, width, _ = frames.shape
    h2, w2 = round(height * scale / 2) * 2, round(width * scale / 2) * 2
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24, options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                width=w2, height=h2, interpolation="BILINEAR"
            )
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def bit_errors(frames: np.ndarray, clip_id: str) -> int:
    acc = watermark._Accumulator()
    for frame in frames:
        acc.add_rgb(frame)
    layout = watermark._layout()
    correlation = np.bincount(layout.bit_of, layout.chip * acc.total, 64)
    return int(np.sum((correlation > 0) != watermark._codeword(clip_id).astype(bool)))


def tiny_cost(runs: int, size: int) -> None:
    request = kinema.GenerationRequest(
        "a red fox running through snow", width=size, height=size, seconds=1.0, steps=8, seed=11
    )
    kinema.generate(request)  # build and warm the model
    generate_s, plain_s, signed_s, plain_b, signed_b = [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            seconds, clip = timed(kinema.generate, request)
            generate_s.append(seconds)
            order = [(False, plain_s, plain_b), (True, signed_s, signed_b)]
            for provenance, times, sizes in order if run % 2 == 0 else order[::-1]:  # interleave against drift
                path = Path(folder) / f"{provenance}.mp4"
                seconds, _ = timed(clip.save, path, provenance=provenance)
                times.append(seconds)
                sizes.append(path.stat().st_size)
    gen, plain, signed = statistics.median(generate_s), statistics.median(plain_s), statistics.median(signed_s)
    mark = clip.metadata["provenance"]["watermark"]["status"]
    print(f"\n## tiny clip {size}x{size}, {clip.frame_count} frames, 8 steps (median of {runs}; watermark {mark})")
    print(f"{'':<28}{'seconds':>9}{'bytes':>9}")
    print(f"{'generate':<28}{gen:>9.3f}")
    print(f"{'save, provenance off':<28}{plain:>9.3f}{statistics.median(plain_b):>9.0f}")
    print(f"{'save, provenance on':<28}{signed:>9.3f}{statistics.median(signed_b):>9.0f}")
    added, added_bytes = signed - plain, statistics.median(signed_b) - statistics.median(plain_b)
    print(
        f"added: {added:.3f} s = {added / (gen + plain):.1%} of generate + encode;"
        f" {added_bytes:.0f} bytes = {added_bytes / statistics.median(plain_b):.1%} of the file"
    )


def hd_cost(runs: int, frames: int = 24) -> None:
    import c2pa

    from kinema.media import provenance

    clip_frames = natural(frames, 720, 1280, 4, 7)
    embed_s, read_s, encode_s, sign_s = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        unsigned, signed = Path(folder) / "u.mp4", Path(folder) / "s.mp4"
        identity = provenance.signing_identity()
        for _ in range(runs):
            seconds, marked = timed(watermark.embed, clip_frames, "0123456789")
            embed_s.append(seconds / frames)
            read_s.append(timed(watermark.read, marked)[0] / frames)
            encode_s.append(timed(write_mp4, unsigned, marked, 24)[0] / frames)

            def sign():
                signer = c2pa.Signer.from_info(
                    c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
                )
                manifest = provenance._manifest(
                    {"prompt": "p", "backend": "tiny"}, {"clip_id": "0123456789", "watermark": {"status": "embedded"}}
                )
                with c2pa.Builder(manifest) as builder, open(unsigned, "rb") as source, open(signed, "w+b") as target:
                    builder.sign(signer, "video/mp4", source, target)

            sign_s.append(timed(sign)[0])
        size = unsigned.stat().st_size
        added = signed.stat().st_size - size
    embed, read, encode = (statistics.median(x) * 1000 for x in (embed_s, read_s, encode_s))
    print(f"\n## 1280x720, {frames} frames (median of {runs})")
    print(f"{'per frame':<34}{'ms':>8}{'x encode':>10}")
    print(f"{'H.264 encode (crf 18, baseline)':<34}{encode:>8.1f}{1:>10.2f}")
    print(f"{'watermark embed':<34}{embed:>8.1f}{embed / encode:>10.2f}")
    print(f"{'watermark read':<34}{read:>8.1f}{read / encode:>10.2f}")
    sign = statistics.median(sign_s) * 1000
    print(
        f"C2PA signing of the {size / 1e6:.1f} MB clip: {sign:.0f} ms ({sign / frames:.1f} ms per frame),"
        f" +{added} bytes ({added / size:.2%})"
    )


def robustness() -> None:
    clip = kinema.generate(
        kinema.GenerationRequest("a red fox running through snow", width=256, height=256, seconds=0.4, steps=2, seed=5)
    )
    cases = [
        ("tiny model 256x256", clip.frames),
        ("natural static 256x256", natural(9, 256, 256, 0, 1)),
        ("natural pan 256x256", natural(9, 256, 256, 3, 2)),
        ("natural static 1280x720", natural(9, 720, 1280, 0, 3)),
        ("natural pan 1280x720", natural(9, 720, 1280, 6, 4)),
    ]
    attacks = [
        ("crf 23", dict(crf=23)),
        ("crf 30", dict(crf=30)),
        ("0.75x crf 23", dict(crf=23, scale=0.75)),
        ("0.5x crf 23", dict(crf=23, scale=0.5)),
    ]
    print("\n## robustness, 9 frames each: bit errors of 64 / detected (a clip id with a matching CRC-24)")
    print(f"{'content':<26}{'PSNR dB':>8}" + "".join(f"{name:>15}" for name, _ in attacks) + f"{'unmarked':>10}")
    for name, frames in cases:
        marked = watermark.embed(frames, "a1b2c3d4e5")
        psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - frames) ** 2))
        cells = []
        for _, attack in attacks:
            copy = reencode(marked, **attack)
            reading = watermark.read(copy)
            ok = "yes" if reading.detected and reading.clip_id == "a1b2c3d4e5" else "no"
            cells.append(f"{bit_errors(copy, 'a1b2c3d4e5'):>2} / {ok:<3}")
        false_alarm = "yes" if watermark.read(reencode(frames, crf=23)).detected else "no"
        print(f"{name:<26}{psnr:>8.1f}" + "".join(f"{c:>15}" for c in cells) + f"{false_alarm:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("KINEMA_DEVICE", "cpu")
    tiny_cost(args.runs, 64)
    tiny_cost(args.runs, 256)
    hd_cost(args.runs)
    robustness()


if __name__ == "__main__":
    main()
