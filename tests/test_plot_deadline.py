"""The deadline figure: accuracy and deadline-miss rate versus channel.deadline_ms, one
line per MCS setting, from the records' own numbers."""

from __future__ import annotations

import json

from semcom.plotting.deadline_figs import plot_deadline
from semcom.plotting.points import Condition, MetricSpec, Point


def _point(mcs, deadline, acc, miss, snr=4.0):
    rec = {
        "run_id": f"r{mcs}-{deadline}",
        "label": "tokens",
        "config": {"channel": {"mcs": mcs, "deadline_ms": deadline, "deadline_kind": "airtime"}},
        "link": {"deadline_miss_rate": miss},
    }
    cond = Condition("nr-table", snr)
    return Point(rec, "tokens", cond, 0.02, acc, acc - 5, acc + 5, "k16", False, False)


def test_one_line_per_setting_with_its_miss_rate(tmp_path):
    pts = [
        _point(m, d, acc, miss)
        for m, rows in {
            "auto": [(0.05, 80.0, 0.4), (0.2, 91.0, 0.0)],
            9: [(0.05, 60.0, 0.7), (0.2, 90.0, 0.0)],
        }.items()
        for d, acc, miss in rows
    ]
    fig = plot_deadline(
        pts, MetricSpec("vqa", "accuracy", percent=True), tmp_path, formats=("png",)
    )
    assert fig is not None and fig.files[0].is_file()
    side = json.loads(fig.sidecar.read_text())
    by = {s["setting"]: s for s in side["series"]}
    assert set(by) == {"MCS auto (adaptation)", "MCS 9"}
    assert by["MCS 9"]["deadline_ms"] == [0.05, 0.2] and by["MCS 9"]["y"] == [60.0, 90.0]
    assert by["MCS auto (adaptation)"]["deadline_miss_rate"] == [0.4, 0.0]


def test_no_figure_without_two_deadlines(tmp_path):
    pts = [_point(9, 0.1, 90.0, 0.0), _point(9, None, 91.0, None)]
    assert plot_deadline(pts, MetricSpec("vqa", "accuracy"), tmp_path, formats=("png",)) is None
