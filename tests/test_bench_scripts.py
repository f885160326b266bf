"""The benchmark scripts' arithmetic: when a target counts as reached, and the ratio reported."""

import pytest

from bench_vs_trl import Config, best_window, compare, time_to_target


def curve(accuracies: list[float], seconds_per_step: float) -> list[dict]:
    return [{"step": i + 1, "seconds": (i + 1) * seconds_per_step, "accuracy": a} for i, a in enumerate(accuracies)]


def test_the_target_needs_the_mean_of_the_window_not_one_lucky_step():
    points = curve([0.1, 0.9, 0.2, 0.7, 0.8, 0.9, 0.95], 10.0)
    hit = time_to_target(points, 0.8, 3)
    # windows: (.1,.9,.2)=.4, (.9,.2,.7)=.6, (.2,.7,.8)=.567, (.7,.8,.9)=.8 -> step 6
    assert (hit["step"], hit["seconds"]) == (6, 60.0)
    assert hit["window_mean"] == pytest.approx(0.8)
    assert time_to_target(points, 0.99, 3) is None
    assert time_to_target(points[:2], 0.0, 3) is None  # shorter than the window


def test_best_window():
    assert best_window(curve([0.1, 0.9, 0.2, 0.7, 0.8, 0.9], 1.0), 3) == pytest.approx(0.8)
    assert best_window(curve([1.0], 1.0), 3) == 0.0


def test_the_ratio_is_the_peers_time_over_ours():
    ours, trl = curve([0.5, 0.8, 0.9, 0.9], 10.0), curve([0.1, 0.5, 0.8, 0.8, 0.9, 0.9], 50.0)
    result = compare(ours, trl, Config())
    # ours: (.5,.8,.9)=.733, (.8,.9,.9)=.867 -> step 4 at 40 s; TRL: (.8,.8,.9) -> step 5 at 250 s
    assert result["time_to_accuracy_ratio"] == pytest.approx(250 / 40)
    assert result["target"] == 0.8 and "both measured at the target" in result["note"]


def test_a_peer_that_never_gets_there_is_compared_at_its_best():
    ours, trl = curve([0.5, 0.7, 0.9, 0.9], 10.0), curve([0.1, 0.3, 0.5, 0.6, 0.4], 50.0)
    result = compare(ours, trl, Config())
    # TRL's windows: .3, .467, .5 -> best .5 at step 5 (250 s); ours first reaches .5 at step 3: (.5,.7,.9)=.7 (30 s)
    assert result["target"] == pytest.approx(0.5)
    assert result["time_to_accuracy_ratio"] == pytest.approx(250 / 30)
    assert "never reached 0.8" in result["note"]
