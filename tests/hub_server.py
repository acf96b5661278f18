"""A loopback stand-in for the Hugging Face Hub, enough for huggingface_hub's real client.

It serves, over a real socket, the endpoints that ``create_repo``, ``upload_folder`` (preupload,
LFS batch + basic upload, NDJSON commit), ``create_branch``, ``model_info``, ``list_repo_tree``,
``get_paths_info`` and ``hf_hub_download`` (resolve HEAD/GET) call, so that
``from_pretrained("org/name")``, ``pipeline(model="org/name")``, PEFT and timm's ``hf-hub:`` load
from it. Set ``HF_ENDPOINT`` to ``server.url`` *before* importing huggingface_hub, and
``HF_HUB_DISABLE_XET=1`` (the Xet protocol is not emulated).

    server = FakeHub(token="hf_secret")
    server.fail("/commit/", status=503, times=1)    # the next commit answers 503
    server.requests                                 # (method, path, headers, body) of every call

Files whose names look binary (safetensors, bin, png...) or that are large go through LFS, like
the Hub's default ``.gitattributes``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".png", ".jpg", ".ckpt", ".h5", ".msgpack")


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def validate_card_metadata(content: str) -> list[str]:
    """The checks the Hub makes on a README's YAML header that matter here (model-index shape)."""
    import yaml

    if not content.startswith("---"):
        return []
    try:
        metadata = yaml.safe_load(content.split("---", 2)[1]) or {}
    except yaml.YAMLError as error:
        return [f"YAML: {error}"]
    errors = []
    for entry in metadata.get("model-index", []):
        if "name" not in entry:
            errors.append("model-index entry without name")
        for result in entry.get("results", []):
            if "type" not in result.get("task", {}):
                errors.append("model-index result without task.type")
            if not {"name", "type"} <= set(result.get("dataset", {})):
                errors.append("model-index result dataset needs name and type")
            for metric in result.get("metrics", []):
                if not {"type", "value"} <= set(metric):
                    errors.append("model-index metric needs type and value")
    return errors


@dataclass
class Repo:
    private: bool
    branches: dict = field(default_factory=dict)  # branch -> list of (commit oid, message, files)

    def files(self, revision: str) -> dict | None:
        for history in self.branches.values():  # a commit oid as revision
            for oid, _, files in history:
                if oid == revision:
                    return files
        history = self.branches.get(revision)
        return history[-1][2] if history else None

    def head(self, revision: str) -> str:
        if revision in self.branches:
            return self.branches[revision][-1][0]
        return revision


class FakeHub:
    def __init__(self, token: str = "hf_test_token", user: str = "tester", port: int = 0):
        self.token = token
        self.user = user
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.failures: list[list] = []  # [pattern, status, remaining]
        self.lock = threading.Lock()
        self.commits = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_POST(self):
                hub._handle(self, "POST")

            def do_PUT(self):
                hub._handle(self, "PUT")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        """Forget every repo, object, request and pending failure."""
        with self.lock:
            self.repos.clear()
            self.lfs.clear()
            self.requests.clear()
            self.failures.clear()

    def fail(self, pattern: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path contains ``pattern`` with ``status``."""
        self.failures.append([pattern, status, times])

    def file(self, repo_id: str, path: str, revision: str = "main") -> bytes | None:
        files = self.repos[repo_id].files(revision) or {}
        return files.get(path)

    # --- request handling ------------------------------------------------------------------

    def _handle(self, handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = urlparse(handler.path).path
        with self.lock:
            self.requests.append((method, handler.path, dict(handler.headers), body))
            for failure in self.failures:
                if failure[0] in path and failure[2] > 0:
                    failure[2] -= 1
                    return self._send(handler, failure[1], {"error": "injected failure"})
        authorised = handler.headers.get("Authorization") == f"Bearer {self.token}"
        try:
            with self.lock:
                self._route(handler, method, path, body, authorised)
        except Exception as error:  # a bug in the fake must show up in the test, not hang it
            self._send(handler, 500, {"error": f"fake hub: {type(error).__name__}: {error}"})
            raise

    def _route(self, h, method, path, body, authorised):
        if path == "/api/whoami-v2":
            if not authorised:
                return self._send(h, 401, {"error": "Invalid credentials"})
            return self._send(h, 200, {"type": "user", "name": self.user, "orgs": [],
                                       "auth": {"accessToken": {"displayName": "t", "role": "write"}}})  # fmt: skip
        if path == "/api/validate-yaml" and method == "POST":
            errors = validate_card_metadata(json.loads(body)["content"])
            return self._send(h, 400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})  # fmt: skip
        if path == "/api/repos/create" and method == "POST":
            if not authorised:
                return self._send(h, 401, {"error": "Invalid credentials"})
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
            if repo_id in self.repos:
                return self._send(h, 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})  # fmt: skip
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.repos[repo_id] = Repo(private=private)
            self._commit(
                repo_id, "main", "initial commit", {".gitattributes": b"*.safetensors filter=lfs\n"}
            )
            return self._send(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            repo = self._readable(h, m[1], authorised)
            revision = unquote(m[2] or "main")
            if repo is None:
                return None
            files = repo.files(revision)
            if files is None:
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self._send(h, 200, {"id": m[1], "modelId": m[1], "sha": repo.head(revision),
                                       "private": repo.private, "tags": [], "downloads": 0, "likes": 0,
                                       "siblings": [{"rfilename": p} for p in sorted(files)]})  # fmt: skip
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
            if self._writable(h, m[1], authorised) is None:
                return None
            files = self.repos[m[1]].files(unquote(m[2])) or {}
            answer = []
            for item in json.loads(body)["files"]:
                mode = "lfs" if self._is_lfs(item["path"], item["size"]) else "regular"
                existing = files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = (
                        hashlib.sha256(existing).hexdigest() if mode == "lfs" else git_oid(existing)
                    )
                answer.append(
                    {"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid}
                )
            return self._send(h, 200, {"files": answer})
        if m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            if self._writable(h, m[1], authorised) is None:
                return None
            objects = []
            for obj in json.loads(body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.lfs:
                    entry["actions"] = {
                        "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}", "header": {}}
                    }
                objects.append(entry)
            return self._send(h, 200, {"transfer": "basic", "objects": objects})
        if m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path):
            if hashlib.sha256(body).hexdigest() != m[1]:
                return self._send(h, 400, {"error": "sha256 mismatch"})
            self.lfs[m[1]] = body
            return self._send(h, 200, {})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
            if self._writable(h, m[1], authorised) is None:
                return None
            return self._apply_commit(h, m[1], unquote(m[2]), body)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/([^/]+)", path):
            repo = self._writable(h, m[1], authorised)
            if repo is None:
                return None
            branch = unquote(m[2])
            if branch in repo.branches:
                return self._error(h, 409, None, "Reference already exists")
            repo.branches[branch] = list(repo.branches["main"][-1:])
            return self._send(h, 200, {})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            repo = self._readable(h, m[1], authorised)
            if repo is None:
                return None
            files = repo.files(unquote(m[2])) or {}
            prefix = (unquote(m[3] or "").strip("/") + "/").lstrip("/")
            return self._send(
                h,
                200,
                [self._entry(p, c) for p, c in sorted(files.items()) if p.startswith(prefix)],
            )
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/paths-info/([^/]+)", path):
            repo = self._readable(h, m[1], authorised)
            if repo is None:
                return None
            files = repo.files(unquote(m[2])) or {}
            asked = self._form_or_json_paths(h, body)
            return self._send(h, 200, [self._entry(p, files[p]) for p in asked if p in files])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo = self._readable(h, m[1], authorised)
            if repo is None:
                return None
            revision, filename = unquote(m[2]), unquote(m[3])
            files = repo.files(revision)
            if files is None:
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if filename not in files:
                return self._error(h, 404, "EntryNotFound", f"{filename} does not exist")
            content = files[filename]
            headers = {"X-Repo-Commit": repo.head(revision), "ETag": f'"{git_oid(content)}"'}
            if self._is_lfs(filename, len(content)):
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(content).hexdigest()}"'
                headers["X-Linked-Size"] = str(len(content))
            return self._send_bytes(h, content, headers, head=method == "HEAD")
        return self._send(h, 404, {"error": f"fake hub: no route for {method} {path}"})

    def _apply_commit(self, h, repo_id, revision, body):
        repo = self.repos[repo_id]
        if revision not in repo.branches:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = dict(repo.files(revision))
        message = ""
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                message = value.get("summary", "")
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return self._send(
                        h, 422, {"error": f"LFS object {value['oid']} was never uploaded"}
                    )
                files[value["path"]] = self.lfs[value["oid"]]
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
        oid = self._commit(repo_id, revision, message, files)
        return self._send(h, 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{repo_id}/commit/{oid}"})  # fmt: skip

    def _commit(self, repo_id, branch, message, files) -> str:
        self.commits += 1
        oid = hashlib.sha1(f"{repo_id}{branch}{self.commits}".encode()).hexdigest()
        self.repos[repo_id].branches.setdefault(branch, []).append((oid, message, files))
        return oid

    # --- helpers -----------------------------------------------------------------------------

    def _readable(self, h, repo_id, authorised):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorised):
            self._error(h, 401 if not authorised else 404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _writable(self, h, repo_id, authorised):
        if not authorised:
            self._send(h, 401, {"error": "Invalid credentials in Authorization header"})
            return None
        return self._readable(h, repo_id, authorised)

    @staticmethod
    def _is_lfs(path: str, size: int) -> bool:
        return path.endswith(LFS_SUFFIXES) or size > 10_000_000

    def _entry(self, path: str, content: bytes) -> dict:
        entry = {"type": "file", "path": path, "size": len(content), "oid": git_oid(content)}
        if self._is_lfs(path, len(content)):
            entry["lfs"] = {
                "oid": hashlib.sha256(content).hexdigest(),
                "size": len(content),
                "pointerSize": 130,
            }
        return entry

    @staticmethod
    def _form_or_json_paths(h, body: bytes) -> list[str]:
        if "json" in (h.headers.get("Content-Type") or ""):
            return list(json.loads(body).get("paths", []))
        from urllib.parse import parse_qs

        return parse_qs(body.decode()).get("paths", [])

    def _error(self, h, status, code, message):
        return self._send(h, status, {"error": message}, {"X-Error-Code": code} if code else {})

    @staticmethod
    def _send(h, status, payload, headers=None):
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _send_bytes(h, content, headers, head=False):
        h.send_response(200)
        h.send_header("Content-Length", str(len(content)))
        h.send_header("Content-Type", "application/octet-stream")
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if not head:
            h.wfile.write(content)
