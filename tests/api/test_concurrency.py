"""One writer, many readers: a writer process commits while 8 readers search a live server.
No reader sees an error, and every result is consistent with one committed state."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sift.errors import WriterBusy
from sift.index.records import Article
from sift.search.engine import Sift
from sift.settings import Settings

from tests.api_server import serve
from tests.helpers import LIVE, ROOT, version_text

ROUNDS = 6
WRITER = r"""
import sys
from sift.index.records import Article
from sift.settings import Settings
from sift.search.engine import Sift
from tests.helpers import version_text, LIVE
engine = Sift(Settings(index=sys.argv[1]))
for round_ in range(int(sys.argv[2])):
    articles = [Article(id=f"live-{j}", title=f"Live {j}", text=version_text(j, round_))
                for j in range(LIVE)]
    articles += [Article(id=f"new-{round_}-{j}", text=f"Round {round_} added report {j}. "
                         "The harbour reopened to ferries.") for j in range(5)]
    engine.index_articles(articles)
    print("committed", round_, flush=True)
"""


def consistent(hit: dict[str, object]) -> bool:
    """The hit's sentence and passage come from one version of its article."""
    article_id = str(hit["article_id"])
    if not article_id.startswith("live-"):
        return True
    j = int(article_id.split("-")[1])
    for version in range(ROUNDS):
        text = version_text(j, version)
        if (
            text[int(hit["start"]) : int(hit["end"])] == hit["sentence"]  # type: ignore[call-overload]
            and text[int(hit["passage_start"]) : int(hit["passage_end"])] == hit["passage"]  # type: ignore[call-overload]
        ):
            return True
    return False


def test_readers_keep_answering_while_a_writer_commits(tmp_path: Path, seeded_dir: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(seeded_dir, index)
    errors: list[str] = []
    checked = [0]
    stop = threading.Event()

    with serve(index) as server:
        base = server.url

        def reader(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                while not stop.is_set():
                    mode = ("hybrid", "dense", "keyword")[n % 3]
                    response = client.get(
                        "/search", params={"q": "harbour ferries version", "k": 10, "mode": mode}
                    )
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    for hit in response.json()["results"]:
                        checked[0] += 1
                        if not consistent(hit):
                            errors.append(f"inconsistent hit: {hit}")

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        writer = subprocess.run(
            [sys.executable, "-c", WRITER, str(index), str(ROUNDS)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert writer.returncode == 0, writer.stderr
        assert writer.stdout.count("committed") == ROUNDS
        assert not errors, errors[:5]
        assert checked[0] > 50
        # The server picked up the last commit without a restart.
        with httpx.Client(base_url=base, timeout=60) as client:
            last = client.get("/search", params={"q": f"version {ROUNDS - 1} sailings", "k": 3})
            assert f"version {ROUNDS - 1}" in last.json()["results"][0]["passage"]
            assert client.get("/stats").json()["articles"] == 6 + LIVE + 5 * ROUNDS


def test_a_second_writer_waits_its_turn_with_a_clear_message(
    tmp_path: Path, seeded_dir: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(seeded_dir, index)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(30)",
            str(index / "write.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterBusy, match="another sift process is writing"):
            Sift(Settings(index=index)).index_articles([Article(id="x", text="Blocked.")])
    finally:
        holder.kill()
        holder.wait()
    assert Sift(Settings(index=index)).index_articles([Article(id="x", text="Now fine.")]).added
