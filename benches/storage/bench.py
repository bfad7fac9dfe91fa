"""Storage throughput: bkg-db's /storage/v1 beside the direct transfer of the same bytes, on the
local backend (a directory) and on the S3 backend (moto), in one run.

Run by benches/storage/compare.sh, which starts moto and two bkg-db servers (one per backend)
and passes their addresses:

    bench.py WORK LOCAL_URL LOCAL_KEY S3_URL S3_KEY MOTO_URL DIRECT_BUCKET

Measured, each ST_RUNS times (the median is reported), bkg-db and the direct transfer taking
turns:

- large object, local: POST /storage/v1/object/bench/<name> (raw body streamed from a file of
  random bytes) and GET of it, beside writing the same bytes to a file on the same file system
  (fsync of the file and its directory, as bkg-db does) and reading them back;
- large object, S3: the same through the bkg-db on moto, beside boto3 against the same moto
  (upload_fileobj with its default multipart settings, get_object read in chunks);
- small objects: ST_SMALL_N uploads of 4 KiB, then ST_SMALL_N downloads, one connection, beside
  file writes (fsync) and reads / boto3 put_object and get_object.

Memory stays bounded: large bodies stream in CHUNK blocks from and to files and sockets.
Nothing is dropped from the page cache: a read just after a write may be served from memory,
for bkg-db and for the direct read alike. Prints a Markdown table (and notes) on stdout.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import json
import os
import statistics
import sys
import time
from urllib.parse import quote, urlsplit

import boto3

CHUNK = 1 << 20  # block of every large read, write and send, on both sides
SMALL_BYTES = 4 << 10
LARGE_MB = int(os.environ.get("ST_LARGE_MB", "256"))
S3_MB = int(os.environ.get("ST_S3_MB", "64"))
SMALL_N = int(os.environ.get("ST_SMALL_N", "500"))
RUNS = max(1, int(os.environ.get("ST_RUNS", "3")))
TARGET = 1.20  # the goal for large objects: bkg-db time at most 1.2 x the direct transfer's
BUCKET = "bench"  # the storage bucket in each bkg-db


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def make_source(path: str, mib: int) -> str:
    """A file of `mib` MiB of random bytes; returns its hex MD5."""
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        for _ in range(mib):
            block = os.urandom(CHUNK)
            md5.update(block)
            f.write(block)
    return md5.hexdigest()


def drain(read_into, buf: memoryview) -> int:
    """Reads to the end through `read_into` (readinto-like), discarding; returns the bytes read."""
    got = 0
    while n := read_into(buf):
        got += n
    return got


class Bkg:
    """One keep-alive HTTP/1.1 connection to a bkg-db's /storage/v1, with the service key."""

    def __init__(self, url: str, key: str):
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600, blocksize=CHUNK)
        self.key = key
        self.buf = memoryview(bytearray(CHUNK))

    def _path(self, name: str) -> str:
        return f"/storage/v1/object/{BUCKET}/{quote(name)}"

    def _call(self, method: str, path: str, body=None, headers=None, want=200) -> http.client.HTTPResponse:
        h = {"apikey": self.key, **(headers or {})}
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
        except Exception:
            self.conn.close()
            raise
        if r.status != want:
            text = r.read()[:500].decode(errors="replace")
            self.conn.close()
            raise RuntimeError(f"{method} {path}: HTTP {r.status}: {text}")
        return r

    def create_bucket(self) -> None:
        self._call("POST", "/storage/v1/bucket", json.dumps({"id": BUCKET}), {"Content-Type": "application/json"}).read()

    def upload(self, name: str, body, size: int) -> None:
        """`body`: bytes, or a file object streamed CHUNK bytes at a time."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        self._call("POST", self._path(name), body, headers).read()

    def download(self, name: str) -> tuple[int, str]:
        """Reads the object to the end, discarding; (bytes read, ETag)."""
        r = self._call("GET", self._path(name))
        got = drain(r.readinto, self.buf)
        length = r.getheader("Content-Length")
        if length is not None and int(length) != got:
            raise RuntimeError(f"GET {name}: {got} bytes of {length}")
        return got, r.getheader("ETag") or ""

    def delete(self, name: str) -> None:
        self._call("DELETE", self._path(name)).read()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_write(src: str, dst: str, buf: memoryview) -> None:
    """Copies `src` to the new file `dst` in CHUNK blocks, then syncs the file and its directory."""
    with open(src, "rb", buffering=0) as i, open(dst, "xb", buffering=0) as o:
        while n := i.readinto(buf):
            o.write(buf[:n])
        os.fsync(o.fileno())
    fsync_dir(os.path.dirname(dst))


def file_read(path: str, buf: memoryview) -> int:
    with open(path, "rb", buffering=0) as f:
        return drain(f.readinto, buf)


class Results:
    def __init__(self):
        self.rows: list[str] = []
        self.notes: list[str] = []
        self.failed = False

    def row(self, backend: str, what: str, size_bytes: int | None, ops: int, bkg: list[float], direct: list[float], how: str):
        """One line: medians of the runs' times; throughput for one large object, ops/s for many."""
        b, d = statistics.median(bkg), statistics.median(direct)

        def rate(t: float) -> str:
            if size_bytes is not None:
                return f"{size_bytes / (1 << 20) / t:,.0f} MiB/s ({t:.2f} s)"
            return f"{ops / t:,.0f} ops/s ({t:.2f} s)"

        ratio = f"{b / d:.2f}"
        if size_bytes is not None:
            ratio += " (target met)" if b / d <= TARGET else f" (target {TARGET:.2f} missed)"
        self.rows.append(f"| {backend} | {what} | {rate(b)} | {rate(d)} | {ratio} | {how} |")

    def fail(self, backend: str, what: str, e: Exception):
        self.failed = True
        self.rows.append(f"| {backend} | {what} | failed | | | |")
        self.notes.append(f"{backend} {what} failed: `{type(e).__name__}: {str(e)[:300]}`")
        print(f"bench: {backend} {what} failed: {e!r}", file=sys.stderr)


def large(res: Results, backend: str, bkg: Bkg, direct_put, direct_get, direct_del, src: str, md5: str, mib: int,
          how: tuple[str, str]):
    """One large object through bkg-db and directly, RUNS times; upload and download rows."""
    size = mib << 20
    t = {"bkg_up": [], "bkg_down": [], "dir_up": [], "dir_down": []}
    for run in range(RUNS):
        name = f"large-{run}.bin"
        with open(src, "rb") as f:
            t["bkg_up"].append(timed(lambda: bkg.upload(name, f, size)))
        got: list[tuple[int, str]] = []
        t["bkg_down"].append(timed(lambda: got.append(bkg.download(name))))
        n, etag = got[0]
        if n != size or etag.strip('"') != md5:
            raise RuntimeError(f"{name}: downloaded {n} bytes with ETag {etag}, expected {size} bytes, MD5 {md5}")
        bkg.delete(name)
        t["dir_up"].append(timed(lambda: direct_put(name)))
        read: list[int] = []
        t["dir_down"].append(timed(lambda: read.append(direct_get(name))))
        if read[0] != size:
            raise RuntimeError(f"direct {name}: read {read[0]} bytes, expected {size}")
        direct_del(name)
    res.row(backend, f"upload 1 × {mib} MiB", size, 1, t["bkg_up"], t["dir_up"], how[0])
    res.row(backend, f"download 1 × {mib} MiB", size, 1, t["bkg_down"], t["dir_down"], how[1])


def small(res: Results, backend: str, bkg: Bkg, direct_put, direct_get, how: tuple[str, str]):
    """SMALL_N objects of 4 KiB up, then down, through bkg-db and directly, RUNS times."""
    payload = os.urandom(SMALL_BYTES)
    t = {"bkg_up": [], "bkg_down": [], "dir_up": [], "dir_down": []}

    def bkg_down(names):
        for n in names:
            if bkg.download(n)[0] != SMALL_BYTES:
                raise RuntimeError(f"GET {n}: wrong size")

    def dir_down(names):
        for n in names:
            if direct_get(n) != SMALL_BYTES:
                raise RuntimeError(f"direct {n}: wrong size")

    for run in range(RUNS):
        names = [f"small/{run}/{i:05d}.bin" for i in range(SMALL_N)]
        t["bkg_up"].append(timed(lambda: [bkg.upload(n, payload, SMALL_BYTES) for n in names]))
        t["bkg_down"].append(timed(lambda: bkg_down(names)))
        t["dir_up"].append(timed(lambda: [direct_put(n, payload) for n in names]))
        t["dir_down"].append(timed(lambda: dir_down(names)))
    res.row(backend, f"upload {SMALL_N} × 4 KiB", None, SMALL_N, t["bkg_up"], t["dir_up"], how[0])
    res.row(backend, f"download {SMALL_N} × 4 KiB", None, SMALL_N, t["bkg_down"], t["dir_down"], how[1])


def main() -> None:
    work, local_url, local_key, s3_url, s3_key, moto_url, direct_bucket = sys.argv[1:8]
    buf = memoryview(bytearray(CHUNK))
    res = Results()

    print(f"sources: {LARGE_MB} MiB and {S3_MB} MiB of random bytes ...", file=sys.stderr)
    src_local, src_s3 = os.path.join(work, "large.bin"), os.path.join(work, "s3.bin")
    md5_local, md5_s3 = make_source(src_local, LARGE_MB), make_source(src_s3, S3_MB)

    local, s3bkg = Bkg(local_url, local_key), Bkg(s3_url, s3_key)
    local.create_bucket()
    s3bkg.create_bucket()
    # The direct side's files live beside bkg-db's data directory (same file system).
    files = os.path.join(work, "direct")
    os.makedirs(os.path.join(files, "small"), exist_ok=True)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")

    def s3_get(key: str) -> int:
        body = s3.get_object(Bucket=direct_bucket, Key=key)["Body"]
        got = 0
        while chunk := body.read(CHUNK):
            got += len(chunk)
        return got

    def s3_upload(key: str) -> None:
        with open(src_s3, "rb") as f:
            s3.upload_fileobj(f, direct_bucket, key)

    def small_file_put(name: str, payload: bytes) -> None:
        path = os.path.join(files, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "xb", buffering=0) as f:
            f.write(payload)
            os.fsync(f.fileno())
        fsync_dir(os.path.dirname(path))

    sections = [
        ("local", "large", lambda: large(
            res, "local", local,
            lambda n: file_write(src_local, os.path.join(files, n), buf),
            lambda n: file_read(os.path.join(files, n), buf),
            lambda n: os.remove(os.path.join(files, n)),
            src_local, md5_local, LARGE_MB, ("file write + fsync", "file read"))),
        ("s3 (moto)", "large", lambda: large(
            res, "s3 (moto)", s3bkg, s3_upload, s3_get,
            lambda k: s3.delete_object(Bucket=direct_bucket, Key=k),
            src_s3, md5_s3, S3_MB, ("boto3 upload_fileobj (multipart)", "boto3 get_object"))),
        ("local", "small", lambda: small(
            res, "local", local, small_file_put,
            lambda n: file_read(os.path.join(files, n), buf),
            ("file write + fsync", "file read"))),
        ("s3 (moto)", "small", lambda: small(
            res, "s3 (moto)", s3bkg,
            lambda k, p: s3.put_object(Bucket=direct_bucket, Key=k, Body=p),
            s3_get, ("boto3 put_object", "boto3 get_object"))),
    ]
    for backend, what, run in sections:
        print(f"{backend}: {what} objects ...", file=sys.stderr)
        try:
            run()
        except Exception as e:  # noqa: BLE001 - reported in the table; the other sections still run
            res.fail(backend, f"{what} objects", e)

    print("| Backend | Transfer | bkg-db | Direct | Time ratio bkg-db / direct | Direct transfer |")
    print("|---|---|---|---|---|---|")
    for r in res.rows:
        print(r)
    print()
    v = importlib.metadata.version
    print(f"Median of {RUNS} run(s); MiB/s and ops/s from the median time (in parentheses). "
          f"Target for large objects: bkg-db at most {TARGET:.2f} × the direct transfer's time.")
    print(f"Clients: Python {sys.version.split()[0]} http.client for bkg-db (one keep-alive connection, "
          f"{CHUNK >> 20} MiB blocks), boto3 {v('boto3')} against moto {v('moto')} (in-memory S3 on loopback). "
          "Local: bkg-db fsyncs each object (file and directory) and commits its metadata row; the direct "
          "write fsyncs file and directory. Nothing is dropped from the page cache: reads right after the "
          "write may come from memory, for bkg-db and direct alike.")
    for n in res.notes:
        print(f"\n{n}")
    sys.exit(1 if res.failed else 0)


if __name__ == "__main__":
    main()
