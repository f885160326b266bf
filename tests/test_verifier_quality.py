"""A sample of the verifier-quality measurement (scripts/report/verify_quality.py runs all of it)."""

import verify_quality


def test_gold_accepted_and_shuffled_rejected_on_a_sample(shared_data):
    for benchmark, limit in (("gsm8k", 150), ("math", 250)):
        pairs = verify_quality.gold_solutions(benchmark, shared_data, None)[::7][:limit]  # spread over the file
        result = verify_quality.measure(benchmark, pairs, seed=0)
        assert result["gold_accepted"] >= 0.99, result["failures"][:5]
        assert result["shuffled_rejected"] >= 0.99, result["failures"][:5]
