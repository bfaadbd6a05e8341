"""results/history.jsonl: appended per run, read back tolerantly, compared run to run."""
from caplab.report import history


def entry(verdicts, **kw):
    return {"notebook": "demo", "tier": "smoke", "time": "t", "git": "abc", "status": "ok", "wall_s": 10.0,
            "verdicts": verdicts, **kw}


def test_append_read_and_what_moved(tmp_path):
    history.append(tmp_path, entry({"demo.a": "inconclusive", "demo.b": "reproduced"}, time="t1"))
    history.append(tmp_path, entry({"demo.a": "reproduced"}, tier="cpu", time="t2"))
    with open(tmp_path / history.FILE, "a") as fh:
        fh.write("{not json\n")                                   # a damaged line is skipped
    history.append(tmp_path, entry({"demo.a": "reproduced", "demo.b": "reproduced", "demo.c": "not run"},
                                   time="t3"))
    entries = history.read(tmp_path)
    assert [e["time"] for e in entries] == ["t1", "t2", "t3"]
    change = history.change(entries, "demo", "smoke")
    assert change.previous["time"] == "t1" and change.latest["time"] == "t3"     # the cpu run is another series
    assert change.moved == [("demo.a", "inconclusive", "reproduced")] and change.added == ["demo.c"]
    assert history.change(entries, "demo", "smoke", ["demo.b"]).moved == []
    assert history.change(entries, "demo", "cpu").first_run
    assert not history.change(entries, "other", "smoke").first_run


def test_last_runs_estimates_only_from_successful_runs(tmp_path):
    history.append(tmp_path, entry({}, wall_s=100.0))
    history.append(tmp_path, entry({}, wall_s=5.0, status="failed"))
    assert history.last_runs(history.read(tmp_path), "smoke")["demo"]["wall_s"] == 100.0
    assert history.last_runs(history.read(tmp_path), "cpu") == {}
    assert history.read(tmp_path / "nowhere") == []
