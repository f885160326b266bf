"""The benchmark scripts' arithmetic: when a target counts as reached, and the ratio reported."""

import json

import pytest

from bench_vs_trl import Config, best_window, compare, time_to_target
from reasoning_rl.config import parse_config
from runtime.errors import UserError


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


def test_selection_summary_counts_informative_groups_per_completion_and_per_generation_second(tmp_path):
    import json

    from bench_selection import summary

    steps = [{"step": 1, "time/step": 5.0, "time/generate": 4.0, "completions/sampled": 64, "train/informative_groups": 1,
              "train/groups_trained": 8, "train/frac_reward_zero_std": 0.875, "prompts/seen": 8},
             {"step": 2, "time/step": 9.0, "time/generate": 6.0, "completions/sampled": 128, "train/informative_groups": 9,
              "train/groups_trained": 8, "train/frac_reward_zero_std": 0.5, "heldout/greedy": 0.25, "prompts/seen": 20}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in steps))
    task = "arith:add_2d"
    (tmp_path / "results.json").write_text(json.dumps({"tasks": [task], "before": {task: {"greedy": 0.1}},
                                                       "after": {task: {"greedy": 0.5}}}))
    r = summary(tmp_path)
    assert r["informative_groups"] == 10 and r["completions_sampled"] == 192
    assert r["informative_groups_per_100_completions"] == pytest.approx(100 * 10 / 192)
    assert r["informative_groups_trained"] == 1 + 8  # DAPO may sample 9 informative groups and train on 8
    assert r["generate_seconds_per_informative_group"] == pytest.approx(1.0)
    assert r["cumulative"] == [[4.0, 1], [10.0, 10]] and r["greedy_curve"] == [[0, 0.1], [2, 0.25]]
    assert r["record_at_end"] == {"prompts/seen": 20}


def test_run_report_pairs_the_benchmark_before_and_after_and_draws_the_run(tmp_path):
    import report_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = [{"step": s, "reward/mean": 0.1 * s, "train/accuracy": 0.05 * s, "reward/boxed_format": 0.1 * s,
                "completions/mean_length": 200 - 10 * s, "completions/truncated": 0.7 - 0.1 * s} for s in (1, 2, 3, 4)]
    metrics[1]["heldout/greedy"] = 0.05
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (run_dir / "config.json").write_text(json.dumps({"task": "gsm8k", "eval_problems": 16, "max_new_tokens": 256}))
    (run_dir / "results.json").write_text(json.dumps({"wall_seconds": 60.0, "steps": 4, "before": {"gsm8k": {"greedy": 0.0}},
                                                      "after": {"gsm8k": {"greedy": 0.1}}}))
    right = {"before": [1, 0, 0, 0, 0, 0], "after": [1, 1, 1, 0, 0, 1]}
    for name, correct in right.items():
        folder = tmp_path / name
        folder.mkdir()
        rate = sum(correct) / 6
        (folder / "summary.json").write_text(json.dumps({"benchmark": "gsm8k", "n_problems": 6, "n_samples": 1, "pass@1": rate,
                                                         "pass@1_ci95": [0.0, min(1.0, 2 * rate)], "mean_completion_tokens": 100,
                                                         "fraction_truncated": 0.1, "max_new_tokens": 512}))
        (folder / "samples.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "correct": [c], "completions": [f"so \\boxed{{{i}}}" if c else "7"]})
                                                      + "\n" for i, c in enumerate(correct)))
    cfg = parse_config(report_run.Config, [str(run_dir), "--before", str(tmp_path / "before"), "--after", str(tmp_path / "after"),
                                                      "--json", str(tmp_path / "docs" / "r.json"), "--plot", str(tmp_path / "docs" / "r.png")])
    report = report_run.main(cfg)
    paired = report["benchmark"]["paired"]
    assert (paired["problems"], paired["only_other"], paired["only_base"]) == (6, 3, 0)
    assert paired["difference"] == pytest.approx(0.5) and paired["mcnemar_p"] == pytest.approx(0.25)  # 2 * (1/2)^3
    assert report["benchmark"]["before"]["fraction_boxed"] == pytest.approx(1 / 6) and report["benchmark"]["after"]["fraction_boxed"] == pytest.approx(4 / 6)
    assert [c["step"] for c in report["curve"]] == [1, 2, 3, 4] and report["curve"][1]["heldout/greedy"] == 0.05
    assert json.loads((tmp_path / "docs" / "r.json").read_text())["steps"] == 4
    assert (tmp_path / "docs" / "r.png").stat().st_size > 0
    (tmp_path / "after" / "summary.json").write_text(json.dumps({"benchmark": "math500"}))
    with pytest.raises(report_run.UserError, match="--before is gsm8k but --after is math500"):
        report_run.main(cfg)


def test_the_soak_slope_is_the_least_squares_line_in_percent_of_its_level():
    import soak

    level, slope = soak.fit([11, 12, 13, 14], [10.0, 10.1, 10.2, 10.3])  # 0.1 GiB a step from 10 GiB
    assert abs(level - 10.0) < 1e-9 and abs(slope - 0.1) < 1e-9
    flat_level, flat_slope = soak.fit([11, 12, 13, 14], [10.0, 10.2, 9.8, 10.0])
    assert abs(flat_slope - (-0.04)) < 1e-9
    assert abs(soak.correlation([1, 2, 3], [2, 4, 6]) - 1) < 1e-12 and soak.correlation([1, 1], [2, 3]) == 0.0


def test_the_soak_summarises_a_run_already_made_and_says_when_it_is_too_short(tmp_path):
    import soak

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"preset": "gsm8k", "steps": 14, "max_new_tokens": 256, "beta": 0.04,
                                                     "prompts_per_step": 2, "group_size": 4, "micro_batch_size": 4}))
    rows = [{"step": s, "memory/step_peak_gib": 10.0 + 0.01 * s, "memory/rss_gib": 9.0, "completions/max_length": 200 + s,
             "completions/sampled": 8, "memory/heap_in_use_gib": 6.0, "memory/heap_free_held_gib": 2.0}
            for s in range(1, 15)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = soak.Config(steps=14, warmup=10, reuse=True, output_dir=str(tmp_path))
    results = soak.main(cfg)
    assert results["steps"] == 14 and results["growth_gib_per_100_steps"] == pytest.approx(1.0)
    assert results["growth_percent_per_100_steps"] == pytest.approx(100 * 1.0 / 10.11)  # of the level at step 11
    assert results["heap_in_use_gib_growth_per_100_steps"] == pytest.approx(0.0)
    assert "2x4 completions up to 256 tokens" in results["settings"]
    assert json.loads((tmp_path / "results_soak.json").read_text())["steps"] == 14
    with pytest.raises(soak.UserError, match="2 steps after the --warmup 12"):
        soak.main(soak.Config(steps=15, warmup=12, reuse=True, output_dir=str(tmp_path)))


def test_compare_runs_groups_runs_by_label_and_averages_their_evaluations(tmp_path, capsys):
    import compare_runs

    def fake_run(name: str, evals: dict[int, float]) -> str:
        folder = tmp_path / name
        folder.mkdir()
        lines = [{"step": s, "reward/mean": 0.5} for s in range(1, 13)]
        for line in lines:
            if line["step"] in evals:
                line["heldout/greedy"] = evals[line["step"]]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (folder / "results.json").write_text(json.dumps({"wall_seconds": 125.0, "peak_memory_gib_per_rank": [9.0, 9.5]}))
        return str(folder)

    runs = [fake_run("a0", {6: 0.5, 12: 0.75}), fake_run("a1", {6: 0.25, 12: 0.5}), fake_run("b0", {6: 0.5, 12: 0.625})]
    out = compare_runs.main(compare_runs.Config(runs=tuple(runs), labels=("A", "A", "B"), problems=8,
                                                output=str(tmp_path / "r.json"), plot=str(tmp_path / "r.png")))
    text = capsys.readouterr().out
    assert "| A: mean of 2 | | 37.5 % | 62.5 % | **62.5 %** (all evaluations 50.0 %)" in text
    assert "**75.0 %** (40.9 to 92.9) | 2 min 5 s | 9.5 GiB |" in text  # 6 of 8: Wilson's interval
    assert [r["label"] for r in out["runs"]] == ["A", "A", "B"] and (tmp_path / "r.png").stat().st_size > 0
    with pytest.raises(UserError, match="2 labels for 3 runs"):
        compare_runs.main(compare_runs.Config(runs=tuple(runs), labels=("A", "B")))
