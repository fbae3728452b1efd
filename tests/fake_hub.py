"""A Hugging Face Hub of one model on a loopback port, for pulls through the real huggingface_hub (HF_ENDPOINT).

It answers what ``snapshot_download`` asks: the repository's revision (``/api/models/{repo}/revision/{rev}``), its
file tree (``/api/models/{repo}/tree/{sha}``) and each file (``HEAD``/``GET /{repo}/resolve/{sha}/{file}``). The
weights file is sent in two halves with a gate between them: the second half waits until someone calls ``/release``
(or ``release()``), so a test can watch a pull stand half done without any clock.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo: str, files: dict[str, bytes], gated_file: str) -> None:
        self.repo, self.files, self.gated_file = repo, files, gated_file
        self.gate = threading.Event()
        self.half_sent = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._file(self, body=False)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/release":
                    hub.release()
                    return hub._json(self, {"released": True})
                if path.startswith(f"/api/models/{hub.repo}/revision/"):
                    siblings = [{"rfilename": name} for name in hub.files]
                    return hub._json(self, {"id": hub.repo, "sha": SHA, "siblings": siblings, "private": False})
                if path.startswith(f"/api/models/{hub.repo}/tree/"):
                    tree = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in hub.files.items()
                    ]
                    return hub._json(self, tree)
                hub._file(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _json(handler, value) -> None:
        body = json.dumps(value).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _file(self, handler, *, body: bool) -> None:
        prefix = f"/{self.repo}/resolve/"
        path = handler.path.split("?", 1)[0]
        name = path[len(prefix) :].split("/", 1)[-1] if path.startswith(prefix) else None
        if name not in self.files:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = self.files[name]
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", SHA)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not body:
            return
        if name != self.gated_file:
            handler.wfile.write(data)
            return
        half = len(data) // 2
        handler.wfile.write(data[:half])
        handler.wfile.flush()
        self.half_sent.set()
        self.gate.wait(120)
        handler.wfile.write(data[half:])
