"""Real object stores on loopback for the cold-start benchmark, each behind a per-connection
throttle (``throttle.Throttle``) as a real store caps one stream while its aggregate grows
with connections:

- ``s3``: ``s3rver`` (npm; serves real byte ranges: moto copies the whole object for each);
- ``gcs``: ``gcp-storage-emulator`` (the dev venv's; ranges on ``alt=media``);
- ``http``: nginx (Debian's), ranges and ETags as a static file server or a CDN has them.

``Stores(work, rate)`` starts them; ``put(name, key, path)`` uploads a file; ``env(name)``
is what our server (and KServe's storage initializer) needs to reach one through its
throttle; ``get_range(name, key, start, end)`` is one raw range GET on a connection.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

from _common import ROOT, free_port, in_threads
from throttle import Throttle

BUCKET = "bench"
PART = 16 << 20  # the limit's range GETs
NODE_DIR = os.path.join(ROOT, "build", "bench-node")
BIN = os.path.dirname(sys.executable)
CREDS = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
         "AWS_DEFAULT_REGION": "us-east-1"}
NGINX_CONF = """daemon off; worker_processes 2; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; types {{ application/gzip gz; application/x-tar tar; }}
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""


def s3rver_bin() -> str:
    """s3rver from the npm registry, installed once under build/ (`make bench` does it)."""
    path = os.path.join(NODE_DIR, "node_modules", ".bin", "s3rver")
    if not os.path.exists(path):
        os.makedirs(NODE_DIR, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", NODE_DIR, "s3rver@3.7.1"],
                       check=True)
    return path


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.1)


class Stores:
    def __init__(self, work: str, rate: float, names: List[str]) -> None:
        self.work, self.names = work, names
        self.ports: Dict[str, int] = {}
        self.throttles: Dict[str, Throttle] = {}
        self.procs: List[subprocess.Popen[bytes]] = []
        self.www = os.path.join(work, "www")
        os.makedirs(self.www)
        os.chmod(work, 0o755)  # nginx's workers run as nobody
        for name in names:
            port = free_port()
            getattr(self, "_start_" + name)(port)
            wait_port(port)
            self.ports[name] = port
            self.throttles[name] = Throttle(port, rate).start()
        if "s3" in names:
            self._s3().create_bucket(Bucket=BUCKET)
        if "gcs" in names:
            self._gcs().create_bucket(BUCKET)

    def _spawn(self, argv: List[str], log: str) -> None:
        with open(os.path.join(self.work, log), "wb") as out:
            self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def _start_s3(self, port: int) -> None:
        data = os.path.join(self.work, "s3rver")
        os.makedirs(data)
        self._spawn([s3rver_bin(), "-d", data, "-a", "127.0.0.1", "-p", str(port), "--silent"],
                    "s3rver.log")

    def _start_gcs(self, port: int) -> None:
        self._spawn([os.path.join(BIN, "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                     "--port", str(port), "--in-memory"], "gcs.log")

    def _start_http(self, port: int) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=self.work, port=port, root=self.www))
        self._spawn([nginx, "-c", conf, "-p", self.work], "nginx.log")

    def _s3(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
                            region_name="us-east-1", aws_access_key_id="S3RVER",
                            aws_secret_access_key="S3RVER")

    def _gcs(self):  # type: ignore[no-untyped-def]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        # through the throttle: the emulator writes the uploading Host into mediaLink, which
        # clients that list (KServe) then download from
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{self.throttles['gcs'].port}"
        return storage.Client(project="bench", credentials=AnonymousCredentials())

    def put(self, name: str, key: str, path: str) -> None:
        if name == "s3":
            self._s3().upload_file(path, BUCKET, key)
        elif name == "gcs":
            self._gcs().bucket(BUCKET).blob(key).upload_from_filename(path)
        else:
            dest = os.path.join(self.www, key)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(path, dest)

    def put_tree(self, name: str, prefix: str, root: str) -> None:
        for d, _, files in os.walk(root):
            for f in files:
                full = os.path.join(d, f)
                self.put(name, prefix + os.path.relpath(full, root), full)

    def url(self, name: str, key: str) -> str:
        if name == "http":
            return f"http://127.0.0.1:{self.throttles[name].port}/{key}"
        return f"{ {'s3': 's3', 'gcs': 'gs'}[name]}://{BUCKET}/{key}"

    def env(self, name: str) -> Dict[str, str]:
        """What a client needs to reach ``name`` through its throttle (ours and KServe's)."""
        endpoint = f"http://127.0.0.1:{self.throttles[name].port}"
        if name == "s3":
            return dict(CREDS, S3_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL=endpoint)
        if name == "gcs":
            return {"STORAGE_EMULATOR_HOST": endpoint}
        return {}

    def range_path(self, name: str, key: str) -> str:
        if name == "gcs":
            return f"/download/storage/v1/b/{BUCKET}/o/{quote(key, safe='')}?alt=media"
        return f"/{BUCKET}/{key}" if name == "s3" else f"/{key}"

    def get_range(self, conn: Optional[http.client.HTTPConnection], name: str, key: str,
                  start: int, end: int) -> http.client.HTTPConnection:
        """Bytes [start, end) of ``key`` through the throttle, read and dropped; the
        connection, kept alive where the server allows."""
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.throttles[name].port, timeout=60)
        conn.request("GET", self.range_path(name, key),
                     headers={"Range": f"bytes={start}-{end - 1}"})
        resp = conn.getresponse()
        got = 0
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        if resp.status != 206 or got != end - start:
            raise RuntimeError(f"{name} {key} [{start}, {end}): {resp.status}, {got} bytes")
        if resp.will_close:
            conn.close()
            return None  # type: ignore[return-value]
        return conn

    def close(self) -> None:
        for t in self.throttles.values():
            t.stop()
        for p in self.procs:
            try:
                os.killpg(p.pid, 15)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, 9)


def limit(stores: Stores, name: str, objects: List[Tuple[str, int]], n: int) -> float:
    """N connections, each a loop of 16 MiB range GETs, through the throttle: the bytes of
    ``objects`` as fast as the store allows."""
    parts = [(key, s, min(s + PART, size)) for key, size in objects
             for s in range(0, size, PART)]
    lock = threading.Lock()
    errors: List[BaseException] = []

    def run() -> None:
        conn = None
        while True:
            with lock:
                if not parts:
                    return
                key, s, e = parts.pop()
            try:
                conn = stores.get_range(conn, name, key, s, e)
            except BaseException as ex:  # reported below
                errors.append(ex)
                return

    seconds = in_threads(run, n)
    if errors:
        raise errors[0]
    return seconds


def objects_of(path: str) -> List[Tuple[str, int]]:
    if os.path.isfile(path):
        return [(os.path.basename(path), os.path.getsize(path))]
    return [(os.path.relpath(os.path.join(d, f), path), os.path.getsize(os.path.join(d, f)))
            for d, _, fs in os.walk(path) for f in fs]


def nbytes(path: str) -> int:
    return sum(size for _, size in objects_of(path))
