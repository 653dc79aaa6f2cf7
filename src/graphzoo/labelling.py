"""``graphzoo label``: a local web page to label the images ``graphzoo suggest`` chose.

::

    graphzoo suggest --run runs/<name> -n 50
    graphzoo label --run runs/<name> [--port 8765] [--host 127.0.0.1]

The page (``labelling_page.html``, beside this module) shows one suggested image at a time, large, with its
rank, the class the graph predicts and that probability, one button per class and "skip / unsure", and
below a strip of every suggestion (click one to go there). One image per screen because a keyboard
labeller then needs one key per image and no selection step. Keys: ``1``..``9`` the classes in button
order, ``0`` or ``s`` skip / unsure, ``←`` ``→`` move; an answer moves to the next image.

labels.csv
----------
Every answer is written at once to ``RUN/labels.csv`` (:attr:`graphzoo.rundir.RunDir.labels`)::

    path,label,index,labelled_at
    c17.png,left,17,2026-11-29T22:51:03Z
    #42,right,42,2026-11-29T22:51:05Z

path : the image's ``filename`` from suggestions.csv (the dataset's own name for it), or ``#<index>``
    when the dataset has no file names (an npz without ``filenames``). This is the key of a row.
label : a class name of the run; blank means unlabelled (as in any graphzoo labels CSV).
index : the image's row in the run's prepared data / predictions.csv / features.npy (for people).
labelled_at : UTC time of the answer, ISO 8601.

One row per image: a changed answer replaces that image's row (in place); **"skip / unsure" writes no
label**, and removes an earlier answer of that image (unsure means: no label). Rows of other images —
typed by hand, or from an earlier round of suggestions — are kept as they are, extra columns included.
This is the file a later ``graphzoo run --labels labels.csv`` reads.

Each answer takes an exclusive lock (``fcntl.flock`` on ``labels.csv.lock``, a file that is never
replaced), re-reads labels.csv, changes one row, writes a temporary file in the same folder, fsyncs it
and renames it over labels.csv (``os.replace``). So two tabs, or two ``graphzoo label`` on one run, never
lose each other's answers; a reader never sees half a file; stopping the server (Ctrl-C, kill) loses
nothing already answered. A labels.csv with an unknown class name, a row without a path, or two rows
giving one image different labels is refused, naming its lines, and never overwritten.

Security (SECURITY.md): binds to 127.0.0.1 unless told otherwise; no URL maps to a file (a fixed set of
routes; images by index, only those of suggestions.csv); the Host header must be ``localhost`` or an IP
address (a DNS-rebinding page cannot read the images); a label is posted as JSON from the page's own
origin only (another web site cannot post one).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import fcntl
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from .rundir import RunDir

__all__ = ["add_arguments", "main", "LabelFile", "LabelSession", "LabelsFileError", "make_server", "read_labels",
           "LABEL_COLUMNS"]

LABEL_COLUMNS = ["path", "label", "index", "labelled_at"]
_PAGE = Path(__file__).with_name("labelling_page.html")
_IMAGE = re.compile(r"/image/([0-9]{1,9})\.png")  # the only URL that reaches the data: digits, nothing else
_MAX_BODY = 4096


class LabelsFileError(ValueError):
    """labels.csv itself is wrong (its rows are named); it is left as it is."""


def read_labels(path: Path, classes) -> tuple[list[str], list[dict]]:
    """``(header, rows)`` of a labels CSV (``path,label`` and any other columns), checked; no file: no rows.

    Raises :class:`LabelsFileError` naming the lines (1 = the header) of rows without a path, with a label that is not
    one of ``classes``, or giving one path two different labels. Surrounding spaces are ignored.
    """
    path = Path(path)
    if not path.is_file():
        return list(LABEL_COLUMNS), []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        if "path" not in header or "label" not in header:
            raise LabelsFileError(f"{path} has no 'path' and 'label' columns (its first line: {','.join(header)!r}); "
                             f"fix its header to {','.join(LABEL_COLUMNS)}, or move it away")
        rows, lines = [], []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # a blank line
            rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
            lines.append(reader.line_num)
    fix = "fix or remove those rows; nothing was written"
    no_path = [str(ln) for ln, r in zip(lines, rows) if not r["path"]]
    if no_path:
        raise LabelsFileError(f"{path}: rows without a path on line {', '.join(no_path)}; {fix}")
    unknown = [f"{ln} ({r['label']!r})" for ln, r in zip(lines, rows) if r["label"] and r["label"] not in classes]
    if unknown:
        raise LabelsFileError(f"{path}: unknown class names on line {', '.join(unknown[:10])}"
                         f"{' ...' if len(unknown) > 10 else ''}; the classes are {', '.join(classes)}; {fix}")
    seen: dict[str, tuple[int, str]] = {}
    for ln, r in zip(lines, rows):
        first = seen.setdefault(r["path"], (ln, r["label"]))
        if first[1] != r["label"]:
            raise LabelsFileError(f"{path}: conflicting labels for {r['path']!r}: line {first[0]} says {first[1]!r}, "
                             f"line {ln} says {r['label']!r}; keep one row per image; nothing was written")
    return header, rows


class LabelFile:
    """labels.csv of one run: checked reads, and atomic, locked one-row changes (see the module docstring)."""

    def __init__(self, path, classes) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.classes = list(classes)

    def labels(self) -> dict[str, str]:
        """``{path: label}`` of every row (blank labels included), checked."""
        return {r["path"]: r["label"] for r in read_labels(self.path, self.classes)[1]}

    @contextlib.contextmanager
    def _locked(self):
        # flock on a separate file: labels.csv itself is replaced by each write, and a lock on a replaced
        # file would guard nothing. flock locks belong to open file descriptions, so threads of one server
        # exclude each other as two processes do.
        with open(self.lock_path, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def answer(self, path: str, index: int, label: str | None) -> dict[str, str]:
        """Set (or, with ``label=None``, remove) the label of ``path``; returns the file's ``{path: label}``."""
        if label is not None and label not in self.classes:
            raise ValueError(f"{label!r} is not a class of this run ({', '.join(self.classes)})")
        with self._locked():
            header, rows = read_labels(self.path, self.classes)  # re-read: another writer may have answered
            keyed = {r["path"]: r for r in rows}  # identical duplicate rows become one
            if label is None:
                if path not in keyed:
                    return {k: r["label"] for k, r in keyed.items()}  # skip writes nothing
                del keyed[path]
            else:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                keyed[path] = {**keyed.get(path, {}), "path": path, "label": label, "index": str(index),
                               "labelled_at": when}
            fields = LABEL_COLUMNS + [h for h in header if h not in LABEL_COLUMNS]
            self._write(fields, list(keyed.values()))
            return {k: r["label"] for k, r in keyed.items()}

    def _write(self, fields: list[str], rows: list[dict]) -> None:
        """Temporary file in the same folder (same file system: the rename is atomic), fsync, rename, fsync folder."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)  # the rename itself survives a power cut
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_suggestions(rd: RunDir) -> list[dict]:
    """suggestions.csv as dicts with ``rank``, ``index`` (int), ``path`` (the labels.csv key), ``predicted_class``,
    ``graph_probability`` (float); a clear error when it is missing or not graphzoo suggest's."""
    if not rd.path.is_dir():
        raise FileNotFoundError(f"{rd} is not a folder: point --run at a graphzoo run folder")
    if not rd.suggestions.is_file():
        raise FileNotFoundError(f"{rd.suggestions} does not exist: run graphzoo suggest --run {rd} -n 50 first")
    with open(rd.suggestions, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"rank", "index", "filename", "predicted_class", "graph_probability"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{rd.suggestions} is empty or not written by graphzoo suggest (it needs the columns "
                         f"{', '.join(sorted(need))}); rerun graphzoo suggest --run {rd}")
    try:
        items = [dict(rank=int(r["rank"]), index=int(r["index"]), filename=r["filename"],
                      path=r["filename"] or f"#{int(r['index'])}", predicted_class=r["predicted_class"],
                      graph_probability=float(r["graph_probability"])) for r in rows]
    except ValueError as exc:
        raise ValueError(f"{rd.suggestions}: {exc}; rerun graphzoo suggest --run {rd}") from None
    if len({it["index"] for it in items}) != len(items):
        raise ValueError(f"{rd.suggestions} names an image twice; rerun graphzoo suggest --run {rd}")
    return items


def _load_images(rd: RunDir, items: list[dict]) -> tuple[list[str], dict[int, np.ndarray]]:
    """(class names, {index: uint8 (C, H, W)}) of the suggested images, from the run's own prepared data."""
    from .suggest import images_named

    data, images = images_named(rd, items, moved="move them back, or fix the data path in that file",
                                changed=f"rerun graphzoo suggest --run {rd}")
    if data.multilabel:
        raise ValueError(f"{rd} is a multi-label run: graphzoo label labels images of multiclass runs only")
    return list(data.names), {int(it["index"]): img for it, img in zip(items, images)}


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of one uint8 image (C, H, W): gray for one channel, RGB for three or more (the first three)."""
    from PIL import Image

    arr = image[0] if image.shape[0] < 3 else np.moveaxis(image[:3], 0, -1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


class LabelSession:
    """What the server serves for one run: the suggestions, their images, the classes and labels.csv.

    Everything is read, and an existing labels.csv checked, before anything is served or written.
    """

    def __init__(self, run) -> None:
        self.rd = RunDir(run)
        self.items = read_suggestions(self.rd)
        self.classes, self._images = _load_images(self.rd, self.items)
        self.by_index = {it["index"]: it for it in self.items}
        self.file = LabelFile(self.rd.labels, self.classes)
        self.file.labels()  # a bad labels.csv is refused now, naming its rows
        self._png: dict[int, bytes] = {}
        self._png_lock = threading.Lock()

    def state(self) -> dict:
        """The page's data: run name, classes, and each suggestion with its current label (or None)."""
        labels = self.file.labels()
        return dict(run=self.rd.name, labels_file=str(self.rd.labels), classes=self.classes,
                    items=[{**it, "label": labels.get(it["path"]) or None} for it in self.items])

    def png(self, index: int) -> bytes | None:
        """The PNG of a suggested image; None for any other index."""
        if index not in self.by_index:
            return None
        with self._png_lock:
            if index not in self._png:
                self._png[index] = png_bytes(self._images[index])
            return self._png[index]

    def answer(self, index: int, label: str | None) -> dict[str, str]:
        """Write one answer; returns ``{path: label}`` of the suggested images. KeyError: not a suggestion."""
        item = self.by_index[index]
        labels = self.file.answer(item["path"], index, label)
        return {it["path"]: labels[it["path"]] for it in self.items if labels.get(it["path"])}


def _host_ok(host_header: str | None) -> bool:
    """A Host of ``localhost`` or an IP address. A DNS-rebinding page reaches us under its own domain name."""
    if not host_header:
        return True  # HTTP/1.0 clients; browsers always send Host
    name = urlsplit("//" + host_header).hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server_version = "graphzoo-label"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # one line per thumbnail would drown the start message

    def _send(self, code: int, body: bytes, ctype: str, csp: str = "default-src 'none'") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # patient images stay out of the browser's disk cache
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", csp + "; frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _not_found(self) -> None:
        self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not _host_ok(self.headers.get("Host")):
            return self._send(403, b"unknown Host\n", "text/plain; charset=utf-8")
        route = self.path.split("?", 1)[0]
        session: LabelSession = self.server.session
        if route in ("/", "/index.html"):
            nonce = secrets.token_urlsafe(16)
            page = _PAGE.read_text(encoding="utf-8").replace("__NONCE__", nonce).encode()
            csp = (f"default-src 'none'; img-src 'self'; connect-src 'self'; script-src 'nonce-{nonce}'; "
                   f"style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'")
            return self._send(200, page, "text/html; charset=utf-8", csp)
        if route == "/api/state":
            try:
                return self._json(200, session.state())
            except LabelsFileError as exc:  # labels.csv was broken by hand while we serve: say so on the page
                return self._json(409, {"error": str(exc)})
        match = _IMAGE.fullmatch(route)
        png = session.png(int(match.group(1))) if match else None
        if png is None:
            return self._not_found()
        self._send(200, png, "image/png")

    def do_POST(self) -> None:  # noqa: N802
        if not _host_ok(self.headers.get("Host")):
            return self._json(403, {"error": "unknown Host"})
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
            return self._json(403, {"error": "a label is posted from the labelling page only"})
        if self.path != "/api/label":
            return self._json(404, {"error": "not found"})
        # JSON only: a form on another web site cannot send it without a CORS preflight, which we never allow.
        if self.headers.get_content_type() != "application/json":
            return self._json(415, {"error": "send the label as application/json"})
        raw = self.headers.get("Content-Length") or "0"
        length = int(raw) if raw.isdigit() else -1  # a malformed length is refused like an oversized one
        if not 0 < length <= _MAX_BODY:
            return self._json(413, {"error": f"a label is 1 to {_MAX_BODY} bytes of JSON"})
        try:
            body = json.loads(self.rfile.read(length))
            index, label = body["index"], body.get("label")
            if not isinstance(index, int) or isinstance(index, bool) or not (label is None or isinstance(label, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._json(400, {"error": 'send {"index": <int>, "label": <class name or null>}'})
        session: LabelSession = self.server.session
        if index not in session.by_index:
            return self._json(404, {"error": f"image {index} is not one of the suggestions"})
        try:
            labels = session.answer(index, label or None)
        except LabelsFileError as exc:  # someone broke labels.csv meanwhile: it is left alone
            return self._json(409, {"error": str(exc)})
        except ValueError as exc:  # not a class of the run
            return self._json(400, {"error": str(exc)})
        self._json(200, {"labels": labels})


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a browser's open keep-alive connection must not hold up Ctrl-C
    session: LabelSession


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(run=None, host: str = "127.0.0.1", port: int = 8765, session: LabelSession | None = None) -> _Server:
    """An HTTP server for ``run`` (not started: call ``serve_forever``); ``port=0`` picks a free port."""
    session = session or LabelSession(run)
    try:
        server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use (another graphzoo label?): choose another with "
                             "--port, or --port 0 for a free one") from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"cannot listen on --host {host}: not an address of this machine") from None
        raise
    server.session = session
    return server


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a run folder with suggestions.csv (graphzoo suggest)")
    parser.add_argument("--port", type=_port, default=8765, help="port to listen on (default 8765; 0: any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; see SECURITY.md)")


def main(args: argparse.Namespace) -> int:
    session = LabelSession(args.run)
    server = make_server(host=args.host, port=args.port, session=session)
    host, port = server.server_address[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    done = sum(1 for it in session.state()["items"] if it["label"])
    print(f"graphzoo label: {len(session.items)} suggested images of {session.rd} ({done} already labelled), "
          f"classes {', '.join(session.classes)}", flush=True)
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        print(f"listening on {host} only (this machine; from another one use an SSH tunnel: "
              f"ssh -L {port}:127.0.0.1:{port} THIS_HOST)", flush=True)
    else:
        print(f"WARNING: listening on {host}: anyone who can reach this machine can see these images and write "
              "labels (there is no login); prefer the default --host 127.0.0.1 with an SSH tunnel", flush=True)
    print(f"open {url}\neach answer is written at once to {session.rd.labels}; Ctrl-C stops (nothing answered "
          "is lost)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    n = sum(1 for label in session.file.labels().values() if label)
    print(f"stopped; {session.rd.labels} holds {n} labels", flush=True)
    return 0
