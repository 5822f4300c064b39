"""Benchmarks behind `split-perception bench ...` and `analyze-split`: every figure next to a
baseline measured in the same run, results written as JSON + CSV (+ PNG) to an output folder."""
