"""Content-addressed artifacts on any fsspec URL: serialize once, store under the hash, verify on read.

File format (version 1)::

    b"NBFA" | u8 version | u32 header length | header (JSON) | frame 0 | pad | frame 1 | pad | ...

Frame 0 is the pickle stream (``cloudpickle``, protocol 5); the remaining frames are the out-of-band
buffers pickle 5 hands out for large contiguous data (numpy arrays, pandas blocks, arrow buffers).
They are written straight from the object's memory, so saving a 1 GiB array copies nothing, and each
is aligned to 64 bytes so that a local file can be memory-mapped and the buffers used in place.

The key of an object is the xxh3-128 hash of its whole file. A file is written under a temporary
name and renamed into ``objects/<2 hex>/<30 hex>`` only when complete, so a reader never sees half an
object; an object already present is not written again. Every read recomputes the hash and refuses
bytes that do not match.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import pickle
import struct
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle
import fsspec
import xxhash

from nbflow.model import ArtifactRef

MAGIC = b"NBFA"
FORMAT_VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<4sBI")
_MMAP_MIN = 1 << 20  # below this, a plain read is faster than mapping the file


class ArtifactError(Exception):
    """An artifact cannot be written or read."""


class ArtifactIntegrityError(ArtifactError):
    """The stored bytes do not hash to the artifact's key: the file was corrupted or truncated."""


class SerializationError(ArtifactError):
    """A value cannot be pickled (an open file, a lock, a database connection, ...)."""


def type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def serialize(obj: Any) -> list[memoryview]:
    """The frames of ``obj``: the pickle stream, then its out-of-band buffers (not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise SerializationError(f"{type_name(obj)} cannot be pickled: {exc}") from exc
    frames = [memoryview(stream)]
    for buf in buffers:
        try:
            frames.append(buf.raw())
        except BufferError:  # not contiguous: fall back to one copy
            frames.append(memoryview(bytes(buf)))
    return frames


def _pad(n: int) -> int:
    return -n % ALIGN


def encode_header(frames: list[memoryview], type_: str) -> bytes:
    header = json.dumps({"type": type_, "frames": [f.nbytes for f in frames]}).encode()
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header


def iter_chunks(obj: Any) -> tuple[list[memoryview], str]:
    """Everything written for ``obj``, in order, as memoryviews (header, frames and padding)."""
    frames = serialize(obj)
    head = encode_header(frames, type_name(obj))
    out = [memoryview(head)]
    offset = len(head)
    for frame in frames:
        pad = _pad(offset)
        if pad:
            out.append(memoryview(b"\0" * pad))
            offset += pad
        out.append(frame)
        offset += frame.nbytes
    return out, type_name(obj)


def decode(data: memoryview, key: str = "?") -> Any:
    """The value stored in ``data`` (a whole artifact file); its buffers are views into ``data``."""
    try:
        magic, version, hlen = _PREFIX.unpack_from(data, 0)
    except struct.error as exc:
        raise ArtifactIntegrityError(f"artifact {key} is truncated ({data.nbytes} bytes)") from exc
    if magic != MAGIC:
        raise ArtifactIntegrityError(f"artifact {key} is not an nbflow artifact (bad magic)")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {key} uses format {version}; this nbflow reads up to {FORMAT_VERSION}. "
            "Upgrade nbflow."
        )
    offset = _PREFIX.size
    header = json.loads(bytes(data[offset : offset + hlen]))
    offset += hlen
    frames = []
    for n in header["frames"]:
        offset += _pad(offset)
        frames.append(data[offset : offset + n])
        offset += n
    return pickle.loads(frames[0], buffers=frames[1:])


class ArtifactStore:
    """Artifacts under ``<url>/objects``; ``url`` is any fsspec URL (local path, memory://, s3://)."""

    def __init__(self, url: str, *, fsync: bool = True) -> None:
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(
                f"cannot use {self.url!r} as an artifact store: {exc}. Use a local path or an "
                "fsspec URL whose package is installed (s3:// needs s3fs, gs:// needs gcsfs)."
            ) from exc
        self.root = self.root.rstrip("/")
        self.local = "file" in _protocols(self.fs)
        self.fsync = fsync

    # -- paths ---------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/objects/{key[:2]}/{key[2:]}"

    def _tmp(self) -> str:
        return f"{self.root}/tmp/{uuid.uuid4().hex}"

    # -- writing -------------------------------------------------------------------------------
    def put(self, obj: Any) -> ArtifactRef:
        """Save ``obj`` (once: an identical object already stored is not written again)."""
        chunks, type_ = iter_chunks(obj)
        key, size = self.put_chunks(chunks)
        return ArtifactRef(hash=key, size=size, type=type_)

    def put_chunks(self, chunks: Iterable[memoryview]) -> tuple[str, int]:
        tmp = self._tmp()
        hasher = xxhash.xxh3_128()
        size = 0
        try:
            if self.local:
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                with open(tmp, "wb") as f:
                    for chunk in chunks:
                        hasher.update(chunk)
                        f.write(chunk)
                        size += chunk.nbytes
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
            else:
                with self.fs.open(tmp, "wb") as f:
                    for chunk in chunks:
                        hasher.update(chunk)
                        f.write(chunk)
                        size += chunk.nbytes
            key = hasher.hexdigest()
            final = self.path(key)
            if self.local:
                # An intact copy is never rewritten (a reader on another NFS client keeps its
                # handle), only claimed: its fresh mtime tells ``collect`` (gc) that a run in
                # progress uses it. One corrupted on disk is replaced, so running its step again
                # repairs it; one collected meanwhile is written again.
                if self._claim_local(final) and _intact(final, key):
                    os.unlink(tmp)
                else:
                    os.makedirs(os.path.dirname(final), exist_ok=True)
                    os.replace(tmp, final)
            elif self.fs.exists(final) and self.fs.size(final) == size:
                self.fs.rm_file(tmp)
            else:
                self.fs.mv(tmp, final)
        except OSError as exc:
            _quietly(lambda: self.fs.rm_file(tmp))
            raise ArtifactError(write_error(self.url, exc)) from exc
        return key, size

    # -- reading -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def intact(self, key: str, size: int) -> bool:
        """Whether artifact ``key`` is there with its recorded ``size``: as cheap as ``exists``
        (one stat), and a truncated or partly overwritten file fails it. (A flipped byte does
        not; every read verifies the hash.)"""
        try:
            if self.local:
                return os.path.getsize(self.path(key)) == size
            return bool(self.fs.size(self.path(key)) == size)
        except (FileNotFoundError, OSError):
            return False

    def claim(self, key: str, size: int) -> bool:
        """``intact``, and for a local store also mark the object as just used (its mtime), so
        that a concurrent ``collect`` keeps it: a cache hit claims the outputs it reuses."""
        if self.local and not self._claim_local(self.path(key)):
            return False
        return self.intact(key, size)

    def claim_file(self, relpath: str) -> bool:
        """For a local store, mark a file of the store (a log a cache hit shows) as just used,
        so that a concurrent ``collect_file`` keeps it; False if it is gone. Elsewhere True."""
        return not self.local or self._claim_local(f"{self.root}/{relpath}")

    @staticmethod
    def _claim_local(path: str) -> bool:
        """Touch a local object; False if it is not there."""
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:
            pass  # a read-only store: nothing collects there either
        return True

    # -- listing and collecting (nbflow gc) ----------------------------------------------------
    def iter_objects(self) -> Iterable[tuple[str, int, float]]:
        """Every stored object as (key, size, mtime in seconds since the epoch)."""
        base = f"{self.root}/objects"
        if self.local:
            try:
                shards = sorted(os.scandir(base), key=lambda e: e.name)
            except FileNotFoundError:
                return
            for shard in shards:
                if not shard.is_dir() or len(shard.name) != 2:
                    continue
                for entry in os.scandir(shard.path):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    if entry.is_file() and len(entry.name) == 30:
                        yield shard.name + entry.name, st.st_size, st.st_mtime
            return
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            parts = path.rstrip("/").split("/")
            if len(parts) < 2 or len(parts[-2]) != 2 or len(parts[-1]) != 30:
                continue
            yield parts[-2] + parts[-1], int(info.get("size") or 0), _mtime(info)

    def collect(self, key: str, cutoff: float) -> bool:
        """Delete object ``key`` unless it was written or claimed at or after ``cutoff`` (epoch
        seconds); whether it was deleted. Locally the object is first renamed aside and its mtime
        read there: a writer or a cache hit that touched it just before is seen and the object
        put back; one just after finds it gone and writes it again (or runs the step)."""
        path = self.path(key)
        try:
            if self.local:
                return self._collect_local(path, cutoff)
            try:
                if _mtime(self.fs.info(path)) >= cutoff:
                    return False
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True
        except OSError as exc:
            raise ArtifactError(write_error(self.url, exc)) from exc

    def iter_files(self, prefix: str) -> Iterable[tuple[str, int, float]]:
        """Files under ``prefix`` (a folder inside the store, e.g. ``logs/RUN``) as (path
        relative to the store, size, mtime)."""
        base = f"{self.root}/{prefix.strip('/')}"
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            yield path[len(self.root) + 1:], int(info.get("size") or 0), _mtime(info)

    def collect_file(self, relpath: str, cutoff: float) -> bool:
        """``remove`` a file of the store (a log) unless it was claimed at or after ``cutoff``;
        whether it was removed. Locally it is renamed aside first, as ``collect`` does."""
        path = f"{self.root}/{relpath}"
        if not self.local:
            self.remove(relpath)
            return True
        try:
            removed = self._collect_local(path, cutoff)
        except OSError as exc:
            raise ArtifactError(write_error(self.url, exc)) from exc
        if removed:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))  # a log folder left empty
        return removed

    def _collect_local(self, path: str, cutoff: float) -> bool:
        """Move ``path`` aside, then delete it unless its mtime says it was claimed at or after
        ``cutoff`` (then it goes back); whether it was deleted."""
        aside = f"{self.root}/tmp/gc-{uuid.uuid4().hex}"
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime >= cutoff:
            os.replace(aside, path)
            return False
        os.unlink(aside)
        return True

    def remove(self, relpath: str) -> None:
        """Delete a file inside the store (a log); a missing one is fine. A local log folder
        left empty by it goes too (``tmp/`` stays: writers expect it)."""
        path = f"{self.root}/{relpath}"
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ArtifactError(write_error(self.url, exc)) from exc
        if self.local and relpath.startswith("logs/"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))

    def read_bytes(self, key: str) -> memoryview:
        """The verified bytes of artifact ``key`` (memory-mapped copy-on-write when local)."""
        path = self.path(key)
        try:
            if self.local and os.path.getsize(path) >= _MMAP_MIN:
                with open(path, "rb") as f:
                    data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY))
            else:
                with self.fs.open(path, "rb") as f:
                    size = self.fs.size(path)
                    buf = bytearray(size)
                    n = f.readinto(memoryview(buf))
                    data = memoryview(buf)[:n]
        except FileNotFoundError as exc:
            raise ArtifactError(
                f"artifact {key} is missing from {self.url} (deleted by hand or by gc?). "
                "Re-run the step that produced it."
            ) from exc
        actual = xxhash.xxh3_128(data).hexdigest()
        if actual != key:
            raise ArtifactIntegrityError(
                f"artifact {key} at {path} is corrupt: its bytes hash to {actual}. nbflow will not "
                "return wrong data. Delete the file and re-run the step that produced it "
                "(`nbflow resume RUN_ID --from STEP`)."
            )
        return data

    def get(self, key: str) -> Any:
        return decode(self.read_bytes(key), key)

    # -- small text files (logs) ---------------------------------------------------------------
    def write_text(self, relpath: str, text: str) -> str:
        path = f"{self.root}/{relpath}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return relpath

    def read_text(self, relpath: str) -> str:
        parts = relpath.split("/")
        if relpath.startswith("/") or "\\" in relpath or any(p in ("", ".", "..") for p in parts):
            raise ArtifactError(f"refusing to read {relpath!r}: not a path inside the store")
        with self.fs.open(f"{self.root}/{relpath}", "r", encoding="utf-8") as f:
            text: str = f.read()
        return text


def write_error(url: str, exc: OSError) -> str:
    """Why writing to the store at ``url`` failed, and what to do, by the error's errno."""
    what = {
        errno.ENOSPC: "it is full (no space left on device)",
        errno.EDQUOT: "the disk quota there is exhausted",
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "no permission to write there",
        errno.EPERM: "no permission to write there",
    }.get(exc.errno or 0)
    if what is None:
        return (f"cannot write to the artifact store {url}: {exc}. Check that it exists, is "
                "writable and has free space, or point nbflow elsewhere with --store.")
    fix = ("free space there or make the volume bigger" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else
           "make it writable for the user nbflow and its workers run as")
    return (f"cannot write to the artifact store {url}: {what} ({exc.strerror}"
            f"{f': {exc.filename}' if exc.filename else ''}). Fix: {fix}, or point nbflow at "
            "another store with --store (or DASK_NBFLOW__STORE).")


def _mtime(info: dict[str, Any]) -> float:
    """Modification time (epoch seconds) from an fsspec ``info`` dict, for any backend."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            import datetime as dt

            with contextlib.suppress(ValueError):
                return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return float("inf")  # unknown: never old enough to collect


def _intact(path: str, key: str) -> bool:
    h = xxhash.xxh3_128()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    except OSError:
        return False
    return bool(h.hexdigest() == key)


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _quietly(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        fn()
