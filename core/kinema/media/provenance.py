"""Provenance on every clip: a signed C2PA manifest in the MP4 and an invisible watermark in the frames.

``Clip.save`` calls :func:`prepare` and :func:`write_signed`; ``kinema verify`` and the
server call :func:`verify`. Everything works offline.

Signing key: on first use kinema makes a per-install certificate authority and a
signing certificate under ``kinema_home()/provenance`` (the key file is readable
by its owner only; the CA's key is thrown away once it has signed, so it cannot
mint more). To sign with your own certificate instead, set ``KINEMA_SIGNING_CERT``
(PEM chain: signing certificate first, then intermediates) and ``KINEMA_SIGNING_KEY``
(PEM private key; EC P-256/P-384/P-521, Ed25519 or RSA).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinema.errors import OutputError
from kinema.home import kinema_home
from kinema.media import temps, watermark
from kinema.media.files import probe
from kinema.media.hashing import file_sha256
from kinema.media.visible_mark import draw
from kinema.version import __version__

ASSERTION = "org.kinema.generation"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
_OFFLINE = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}


# --------------------------------------------------------------------------- signing identity


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # signing certificate first, then its issuers
    key_pem: bytes
    alg: str  # c2pa's name: es256, es384, es512, ps256, ed25519
    source: str  # "install" or the certificate's path
    anchor_pem: bytes | None = None  # this install's CA: what `kinema verify` trusts as "signed here"


def provenance_dir() -> Path:
    return kinema_home() / "provenance"


def signing_identity() -> SigningIdentity:
    """The user's certificate (``KINEMA_SIGNING_CERT`` + ``KINEMA_SIGNING_KEY``), else this install's own."""
    cert, key = os.environ.get("KINEMA_SIGNING_CERT"), os.environ.get("KINEMA_SIGNING_KEY")
    if cert or key:
        if not (cert and key):
            raise OutputError(
                "set both KINEMA_SIGNING_CERT and KINEMA_SIGNING_KEY (PEM files), or neither"
                " to sign with this install's own certificate"
            )
        try:
            chain_pem, key_pem = Path(cert).expanduser().read_bytes(), Path(key).expanduser().read_bytes()
        except OSError as error:
            raise OutputError(
                f"cannot read the signing certificate or key: {error} — fix KINEMA_SIGNING_CERT / KINEMA_SIGNING_KEY"
            ) from None
        return SigningIdentity(chain_pem, key_pem, _alg_for(key_pem), cert, _install_anchor())
    return _install_identity()


def _install_anchor() -> bytes | None:
    path = provenance_dir() / "ca.pem"
    return path.read_bytes() if path.is_file() else None


def _install_identity() -> SigningIdentity:
    directory = provenance_dir()
    if not (directory / "signing-key.pem").is_file():
        _create_install_identity(directory)
    return SigningIdentity(
        (directory / "signing-chain.pem").read_bytes(),
        (directory / "signing-key.pem").read_bytes(),
        "es256",
        "install",
        (directory / "ca.pem").read_bytes(),
    )


def _create_install_identity(directory: Path) -> None:
    """Write CA + signing certificate + key into a private temp folder, then rename it into place.

    The rename is atomic, so two processes saving their first clip at once end
    up with one identity (the loser's folder is discarded).
    """
    import getpass
    import platform

    staging = directory.parent / f".provenance.{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    try:
        try:
            owner = f"{getpass.getuser()}@{platform.node() or 'localhost'}"
        except (KeyError, OSError):
            owner = platform.node() or "localhost"
        ca_pem, chain_pem, key_pem = make_certificate_chain(f"kinema on {owner}"[:64])
        (staging / "ca.pem").write_bytes(ca_pem)
        (staging / "signing-chain.pem").write_bytes(chain_pem)
        fd = os.open(staging / "signing-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        try:
            os.rename(staging, directory)
        except OSError:  # another process got there first, or a folder is in the way
            if not (directory / "signing-key.pem").is_file():
                raise OutputError(
                    f"{directory} exists but holds no signing key — move it away and kinema"
                    " will make a new signing certificate"
                ) from None
    finally:
        if staging.exists():
            for child in staging.iterdir():
                child.unlink()
            staging.rmdir()


def make_certificate_chain(common_name: str, *, days: int = 3650) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and an ES256 signing certificate it issued: ``(ca_pem, chain_pem, key_pem)``.

    C2PA validators reject self-signed signing certificates, so the leaf is
    issued by a CA: its key usage is digitalSignature (critical), its extended
    key usage emailProtection + documentSigning (no anyExtendedKeyUsage), and it
    carries subject/authority key identifiers.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kinema")]
        )

    def usage(**flags: bool) -> x509.KeyUsage:
        names = (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
        return x509.KeyUsage(**{n: flags.get(n, False) for n in names})

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"{common_name} CA"[:64])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem


def _alg_for(key_pem: bytes) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise OutputError(f"KINEMA_SIGNING_KEY is not an unencrypted PEM private key ({error})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
        if alg:
            return alg
    raise OutputError("KINEMA_SIGNING_KEY must be an EC P-256/P-384/P-521, Ed25519 or RSA key for C2PA")


# --------------------------------------------------------------------------- writing


@dataclass
class Prepared:
    """What ``Clip.save`` writes: frames (marked), the metadata to store, and how to sign (None: don't)."""

    frames: np.ndarray
    metadata: dict[str, Any]
    sign: Callable[[Path, Callable[[Path], Any]], Path] | None = None


def prepare(clip: Any, *, enabled: bool = True, visible_mark: str | None = None) -> Prepared:
    """Mark the frames and plan the manifest for one save of ``clip`` (which is left unchanged)."""
    frames = clip.frames
    metadata = dict(clip.metadata)
    if visible_mark:
        frames = draw(frames, visible_mark)
        metadata["visible_mark"] = visible_mark
    if not enabled:
        metadata["provenance"] = "off"
        return Prepared(frames, metadata)
    clip_id = watermark.new_clip_id()
    if watermark.can_mark(clip.width, clip.height):
        frames = watermark.embed(frames, clip_id)
        mark: dict[str, Any] = {"status": "embedded", "payload": clip_id}
    else:
        mark = {
            "status": "skipped",
            "reason": f"frames smaller than {watermark.MIN_SIDE}x{watermark.MIN_SIDE} px are not watermarked",
        }
    record = {"clip_id": clip_id, "c2pa": "signed", "watermark": mark}
    metadata["provenance"] = record
    manifest = _manifest(metadata, record)

    def sign(path: Path, write: Callable[[Path], Any]) -> Path:
        return write_signed(path, write, manifest, metadata.get("parent"))

    return Prepared(frames, metadata, sign)


def _manifest(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    prompt = metadata.get("prompt")
    parent = metadata.get("parent") if isinstance(metadata.get("parent"), dict) else None
    generation = {
        "clip_id": record["clip_id"],
        "kinema_version": __version__,
        "backend": metadata.get("backend"),
        "model": metadata.get("model"),
        "kind": metadata.get("kind", "generate"),
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest() if isinstance(prompt, str) else None,
        "seed": metadata.get("seed"),
        "steps": metadata.get("steps"),
        "cameos": list(metadata.get("cameos") or []),
        # Per cameo: "verified" (the person said a one-time challenge at capture) or "unverified".
        "cameo_consent": metadata.get("cameo_consent") or None,
        # A dialogue line a voice model spoke (kinema.cameo.voice_lines): synthetic, whose voice, which model.
        "voice_line": _voice_line(metadata.get("voice_line")),
        "parents": [_parent_summary(parent)] if parent else [],
        "remote": metadata.get("remote"),  # the server that made it, for a remote:NAME backend
        "watermark": {"algorithm": "kinema-ss-v1", **record["watermark"]},
    }
    generator = f"kinema {__version__}" + (
        f" ({generation['backend']}: {generation['model']})" if generation["backend"] else ""
    )
    source = COMPOSITE if generation["kind"] == "extend" else TRAINED
    action = {
        "action": "c2pa.created",
        "digitalSourceType": source,
        "softwareAgent": {"name": "kinema", "version": __version__},
        "description": f"Generated by {generator}",
    }
    return {
        "claim_generator_info": [{"name": "kinema", "version": __version__}],
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [action]}},
            {"label": ASSERTION, "data": {k: v for k, v in generation.items() if v is not None}},
        ],
    }


def _voice_line(line: Any) -> dict | None:
    """What the manifest says of a spoken line: that it is synthetic and whose voice; the words stay private."""
    if not isinstance(line, dict):
        return None
    keys = ("synthetic", "voice_of", "voice_consent", "model")
    return {"text_sha256": hashlib.sha256(str(line.get("text", "")).encode()).hexdigest()} | {
        key: line.get(key) for key in keys
    }


def _parent_summary(parent: dict) -> dict:
    keep = ("id", "sha256", "content_sha256", "backend", "model", "seed", "duration")
    summary = {k: parent[k] for k in keep if parent.get(k) is not None}
    if parent.get("path"):
        summary["name"] = Path(parent["path"]).name  # not the full path: it names the user's folders
    return summary


def write_signed(path: Path, write: Callable[[Path], Any], manifest: dict, parent: Any = None) -> Path:
    """``write`` an unsigned MP4 in a private workspace, sign it into a temp beside ``path``, rename that to ``path``.

    ``path`` appears only when the clip is both complete and signed; on any
    failure both temps are removed and an existing file at ``path`` is untouched.
    The unsigned clip never lies beside the output, not even after ``kill -9``:
    it is made under ``kinema_home()/tmp`` (0700, no playable name), and whatever a
    killed save left there or beside an output is swept by the next save
    (``kinema.media.temps``).
    """
    import c2pa

    dest = Path(path)
    if dest.is_dir():
        raise OutputError(f"{dest} is a directory — give a file name, e.g. {dest / 'clip.mp4'}")
    if not dest.parent.is_dir():
        raise OutputError(f"directory {dest.parent} does not exist — create it first")
    manifest = {**manifest, "title": dest.name}
    identity = signing_identity()
    temps.sweep(dest.parent)
    with temps.workspace() as private:
        unsigned = private / "clip.unsigned"
        write(unsigned)
        try:
            signed, claim = temps.claim(dest.parent, dest.name)
        except OSError as error:
            raise OutputError(f"could not write beside {dest}: {error} — choose another -o path") from None
        try:
            try:
                signer = c2pa.Signer.from_info(
                    c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
                )
                builder = c2pa.Builder(manifest, context=c2pa.Context.from_dict(_OFFLINE))
                with builder, open(unsigned, "rb") as source, open(signed, "w+b") as target:
                    _add_parent(builder, parent)
                    builder.sign(signer, "video/mp4", source, target)
                    target.flush()
                    os.fsync(target.fileno())
            except c2pa.C2paError as error:
                raise OutputError(
                    f"could not sign {dest.name} ({error}) — check KINEMA_SIGNING_CERT/KEY, or save"
                    " with provenance off (--no-provenance) if you really mean to"
                ) from None
            try:
                os.replace(signed, dest)
            except OSError as error:
                raise OutputError(
                    f"could not write {dest}: {error.strerror or error} — choose another -o path"
                ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(signed)
            os.close(claim)  # after the rename: a sweep never takes a temp still being written
    with contextlib.suppress(OSError):
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return dest


def _add_parent(builder: Any, parent: Any) -> None:
    """Embed the parent clip of an extend/remix as an ingredient, when it is still the same file."""
    if not isinstance(parent, dict) or not parent.get("path") or not parent.get("sha256"):
        return
    source = Path(parent["path"])
    try:
        if file_sha256(source) != parent["sha256"]:
            return
        with open(source, "rb") as handle:
            builder.add_ingredient({"title": source.name, "relationship": "componentOf"}, "video/mp4", handle)
    except OSError:
        return


# --------------------------------------------------------------------------- verifying


@dataclass
class VerifyReport:
    """What ``kinema verify`` prints; ``ok`` is True only for a present, valid manifest."""

    path: str
    manifest: str  # "valid", "invalid" or "missing"
    problems: list[str] = field(default_factory=list)  # why the manifest is invalid
    signer: dict | None = None  # common_name, issuer, alg, time
    signed_here: bool = False  # signed by this install's (or the user's configured) certificate chain
    generator: str | None = None
    digital_source_type: str | None = None
    generation: dict = field(default_factory=dict)  # the org.kinema.generation assertion
    ingredients: list[str] = field(default_factory=list)
    watermark: dict = field(default_factory=dict)
    provenance_off: bool = False  # the file's kinema metadata says provenance was turned off on purpose

    @property
    def ok(self) -> bool:
        return self.manifest == "valid"

    @property
    def exit_code(self) -> int:
        """0 valid, 1 invalid (edited or badly signed), 3 missing (stripped, or saved without provenance)."""
        return {"valid": 0, "invalid": 1}.get(self.manifest, 3)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "path": self.path,
            "manifest": self.manifest,
            "problems": self.problems,
            "signer": self.signer,
            "signed_here": self.signed_here,
            "generator": self.generator,
            "digital_source_type": self.digital_source_type,
            "generation": self.generation,
            "cameos": self.generation.get("cameos", []),
            "ingredients": self.ingredients,
            "watermark": self.watermark,
            "provenance_off": self.provenance_off,
        }

    def lines(self) -> list[str]:
        out = [f"{self.path}"]
        if self.manifest == "valid":
            out.append("manifest: present and valid (C2PA signature and content hash check out)")
        elif self.manifest == "invalid":
            out.append("manifest: INVALID — " + "; ".join(self.problems or ["unknown reason"]))
        else:
            out.append(
                "manifest: MISSING"
                + (
                    " (provenance was turned off when it was saved)"
                    if self.provenance_off
                    else " (never signed, or stripped by re-encoding/editing)"
                )
            )
        if self.signer:
            where = "this install / your configured certificate" if self.signed_here else "a certificate not known here"
            out.append(
                f"signer: {self.signer.get('common_name')} (issuer {self.signer.get('issuer')},"
                f" {self.signer.get('alg')}; {where})"
            )
        if self.generator:
            out.append(f"generator: {self.generator}")
        if self.digital_source_type:
            out.append(f"source: {self.digital_source_type.rsplit('/', 1)[-1]}")
        g = self.generation
        if g:
            out.append(
                f"clip id: {g.get('clip_id')}  backend: {g.get('backend')}  model: {g.get('model')}"
                f"  seed: {g.get('seed')}"
            )
            consent = g.get("cameo_consent") or {}
            cameos = [f"{c} ({consent[c]})" if c in consent else c for c in g.get("cameos") or []]
            out.append(f"cameos: {', '.join(cameos) or 'none'}")
            line = g.get("voice_line")
            if isinstance(line, dict):
                whose = f"{line.get('voice_of')}'s voice" if line.get("voice_of") else "the model's own voice"
                out.append(f"voice: synthetic, a line spoken by {line.get('model')} in {whose}")
            if g.get("parents"):
                out.append(
                    "parents: "
                    + ", ".join(p.get("name") or p.get("id") or p.get("sha256", "?")[:12] for p in g["parents"])
                )
        w = self.watermark
        embedded = (g.get("watermark") or {}).get("status")
        if embedded == "skipped" and not w.get("detected"):
            out.append(f"watermark: none embedded ({g['watermark'].get('reason', 'skipped')})")
        elif w.get("detected"):
            match = ""
            if g.get("clip_id"):
                match = (
                    " (matches the manifest)" if w.get("clip_id") == g["clip_id"] else " (DIFFERS from the manifest)"
                )
            out.append(f"watermark: detected, clip id {w['clip_id']}{match}")
        elif w.get("reason"):
            out.append(f"watermark: not read — {w['reason']}")
        else:
            out.append("watermark: not detected")
        return out


def verify(path: str | os.PathLike[str], *, read_watermark: bool = True) -> VerifyReport:
    """Check a file's C2PA manifest (offline) and look for kinema's watermark."""
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise OutputError(f"{path} does not exist or is not a file")
    report = VerifyReport(str(path), "missing")
    anchors = _trust_anchors()
    settings: dict[str, Any] = {**_OFFLINE, "verify": {**_OFFLINE["verify"], "verify_trust": bool(anchors)}}
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    with open(path, "rb") as stream:
        try:
            reader = c2pa.Reader.try_create("video/mp4", stream, None, c2pa.Context.from_dict(settings))
        except c2pa.C2paError as error:
            report.manifest, report.problems = "invalid", [f"unreadable manifest: {error}"]
            reader = None
        if reader is not None:
            with reader:
                _fill_from_manifest(report, reader)
    report.provenance_off = _metadata_says_off(path)
    if read_watermark:
        try:
            report.watermark = watermark.read_file(path).to_dict()
        except Exception as error:  # noqa: BLE001 - any decoder failure is a "could not read", not a crash
            report.watermark = {"detected": False, "reason": f"could not decode the video: {error}"}
    return report


def _trust_anchors() -> str:
    pems = [_install_anchor() or b""]
    extra = os.environ.get("KINEMA_TRUST_ANCHORS")  # PEM file of CAs to treat as "signed here" (your own CA)
    if extra and Path(extra).is_file():
        pems.append(Path(extra).read_bytes())
    return b"".join(pems).decode()


def _fill_from_manifest(report: VerifyReport, reader: Any) -> None:
    state = reader.get_validation_state()
    results = reader.get_validation_results() or {}
    failures = (results.get("activeManifest") or {}).get("failure", [])
    untrusted = [f for f in failures if f.get("code") == "signingCredential.untrusted"]
    problems = [f"{f.get('code')}: {f.get('explanation')}" for f in failures if f not in untrusted]
    report.manifest = "valid" if state in ("Valid", "Trusted") and not problems else "invalid"
    report.problems = problems or ([] if report.manifest == "valid" else [f"validation state {state}"])
    report.signed_here = state == "Trusted"
    manifest = reader.get_active_manifest() or {}
    info = manifest.get("signature_info") or {}
    if info:
        report.signer = {k: info.get(k) for k in ("common_name", "issuer", "alg", "time") if info.get(k)}
    generators = manifest.get("claim_generator_info") or []
    report.generator = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip() for g in generators) or None
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            for action in data.get("actions", []):
                if action.get("action") == "c2pa.created":
                    report.digital_source_type = action.get("digitalSourceType")
                    report.generator = action.get("description", "").removeprefix("Generated by ") or report.generator
        elif label == ASSERTION:
            report.generation = data
    report.ingredients = [i.get("title", "?") for i in manifest.get("ingredients", [])]


def _metadata_says_off(path: Path) -> bool:
    try:
        tags = probe(path).metadata
        return json.loads(tags.get("kinema", "{}")).get("provenance") == "off"
    except Exception:  # noqa: BLE001 - a file we cannot probe simply has no kinema metadata
        return False
