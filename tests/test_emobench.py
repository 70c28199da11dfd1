"""EmoBench loading: the real files from shared/emobench, the pinned and checked download, and clear errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ec2er_utils import emobench
from ec2er_utils.emobench import EmoBenchDataError, chance_accuracy, load_emobench
from tests.helpers import SHARED, needs_emobench
from ec2er_utils.schemas import EAItem, EUItem
from ec2er_utils.taxonomy import EA_CATEGORIES, EU_CATEGORIES

pytestmark = needs_emobench


@pytest.fixture()
def emobench_dir() -> Path:
    return SHARED / "emobench"


@pytest.fixture()
def copy_dir(tmp_path, emobench_dir) -> Path:
    """A writable copy of the two files (in a temp folder, never in the repository) to break on purpose."""
    folder = tmp_path / "emobench"
    folder.mkdir()
    for name in ("EU.jsonl", "EA.jsonl"):
        shutil.copy(emobench_dir / name, folder / name)
    return folder


def test_english_items_by_default(emobench_dir):
    eu = load_emobench("EU", data_dir=emobench_dir)
    ea = load_emobench("EA", data_dir=emobench_dir)
    assert len(eu) == len(ea) == 200
    assert all(isinstance(i, EUItem) and i.language == "en" for i in eu)
    assert all(isinstance(i, EAItem) and i.language == "en" for i in ea)
    assert set(Counter(i.coarse_category for i in eu)) == set(EU_CATEGORIES)
    assert Counter(i.category for i in ea) == dict.fromkeys(EA_CATEGORIES, 50)
    assert Counter(i.coarse_category for i in eu) == {"perspective_taking": 67, "personal_beliefs_and_experiences": 56,
                                                      "complex_emotions": 49, "emotional_cues": 28}


def test_chinese_all_and_limit(emobench_dir):
    zh = load_emobench("EU", "zh", emobench_dir)
    assert len(zh) == 200 and {i.language for i in zh} == {"zh"}
    both = load_emobench("EA", "all", emobench_dir)
    assert Counter(i.language for i in both) == {"en": 200, "zh": 200}
    limited = load_emobench("EA", "all", emobench_dir, limit=3)
    assert [(i.language, i.qid) for i in limited] == [("en", "1"), ("en", "2"), ("en", "3"),
                                                      ("zh", "1"), ("zh", "2"), ("zh", "3")]


def test_environment_variable_and_parameter_precedence(monkeypatch, copy_dir, emobench_dir, tmp_path):
    # A one-item folder named by EMOBENCH_DIR wins over shared/; a data_dir parameter wins over both.
    one = tmp_path / "one"
    one.mkdir()
    (one / "EA.jsonl").write_text((copy_dir / "EA.jsonl").read_text().splitlines()[0] + "\n")
    monkeypatch.setenv("EMOBENCH_DIR", str(one))
    assert len(load_emobench("EA")) == 1
    assert len(load_emobench("EA", data_dir=emobench_dir)) == 200
    monkeypatch.delenv("EMOBENCH_DIR")
    assert emobench.local_emobench_dir() == SHARED / "emobench"


def test_missing_file_names_the_file_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOBENCH_DIR", str(tmp_path))
    with pytest.raises(EmoBenchDataError) as err:
        load_emobench("EU")
    message = str(err.value)
    assert str(tmp_path / "EU.jsonl") in message and "EMOBENCH_DIR" in message


def test_malformed_json_line_names_file_and_line(copy_dir):
    lines = (copy_dir / "EU.jsonl").read_text().splitlines()
    lines[6] = lines[6][:40]  # cut mid-record
    (copy_dir / "EU.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(EmoBenchDataError, match=r"EU\.jsonl, line 7: not valid JSON"):
        load_emobench("EU", data_dir=copy_dir)


def test_invalid_record_names_file_line_and_field(copy_dir):
    lines = (copy_dir / "EA.jsonl").read_text().splitlines()
    record = json.loads(lines[2])
    record["label"] = "none of the choices"
    lines[2] = json.dumps(record)
    (copy_dir / "EA.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(EmoBenchDataError, match=r"EA\.jsonl, line 3: .*not one of the choices"):
        load_emobench("EA", data_dir=copy_dir)


def test_duplicate_qid_is_refused(copy_dir):
    lines = (copy_dir / "EA.jsonl").read_text().splitlines()
    (copy_dir / "EA.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(EmoBenchDataError, match="qid '1' occurs twice"):
        load_emobench("EA", data_dir=copy_dir)


@pytest.mark.parametrize("task, language, message", [("EX", "en", "Unknown EmoBench task 'EX'"),
                                                     ("EU", "fr", "Unknown EmoBench language 'fr'")])
def test_unknown_task_or_language(task, language, message, emobench_dir):
    with pytest.raises(ValueError, match=message):
        load_emobench(task, language, emobench_dir)


def test_bad_limit(emobench_dir):
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_emobench("EU", data_dir=emobench_dir, limit=0)


def _file_server(root: Path):
    """A loopback HTTP server for the files under ``root`` (GitHub's raw file host, for the download test)."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    from tests.helpers import LoopbackHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    return LoopbackHTTPServer(functools.partial(Quiet, directory=str(root)))


def test_download_is_pinned_checked_cached_and_then_read_offline(monkeypatch, tmp_path, emobench_dir):
    monkeypatch.setenv("EC2ER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EC2ER_SHARED_DIR", str(tmp_path / "no-shared"))  # so the download path is taken
    monkeypatch.delenv("EMOBENCH_DIR", raising=False)
    served = tmp_path / "served" / emobench.EMOBENCH_COMMIT / "data"
    served.mkdir(parents=True)
    with _file_server(tmp_path / "served") as server:
        host = server.base_url.removesuffix("/v1")
        monkeypatch.setattr(emobench, "EMOBENCH_URL", host + "/{commit}/data/{task}.jsonl")
        with pytest.raises(EmoBenchDataError, match=r"Could not download EU.jsonl .*3b4f84312541.*EMOBENCH_DIR"):
            load_emobench("EU")  # nothing served yet
        shutil.copy(emobench_dir / "EU.jsonl", served / "EU.jsonl")
        (served / "EU.jsonl").write_bytes((emobench_dir / "EU.jsonl").read_bytes() + b"\n")  # one byte more
        with pytest.raises(EmoBenchDataError, match="SHA256|hash"):
            load_emobench("EU")  # a changed file is refused, not used
        shutil.copy(emobench_dir / "EU.jsonl", served / "EU.jsonl")
        assert len(load_emobench("EU")) == 200
    cached = emobench.emobench_file("EU")  # the server is gone: read from the cache
    assert cached.parent.name == emobench.EMOBENCH_COMMIT[:12] and len(load_emobench("EU")) == 200


def test_chance_accuracy(emobench_dir):
    eu = load_emobench("EU", data_dir=emobench_dir)
    assert chance_accuracy(eu[0]) == pytest.approx(1 / 24)
    assert {round(1 / chance_accuracy(i)) for i in eu} <= {24, 36, 42}  # 6 emotions x 4, 6 or 7 causes
    assert chance_accuracy(load_emobench("EA", data_dir=emobench_dir)[0]) == 0.25
