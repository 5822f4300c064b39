"""`bench rate-accuracy` and `analyze-split`: the PCA feature codec, the equal-accuracy arithmetic,
and small real runs on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from split_perception.bench import equal_accuracy as ea
from split_perception.bench.pca_codec import HEADER, PCACodec
from split_perception.cli import main
from split_perception.errors import PacketError
from split_perception.models.pca import PCA, positions


def _features(n_images: int, seed: int) -> list[torch.Tensor]:
    """Correlated 8-channel features of rank ~3 plus a little noise, like a conv layer's output."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    out = []
    for _ in range(n_images):
        latent = torch.randn(3, 12 * 16, generator=g) * torch.tensor([[4.0], [2.0], [1.0]])
        z = mix @ latent + 0.1 * torch.randn(8, 12 * 16, generator=g)
        out.append(z.reshape(1, 8, 12, 16))
    return out


@pytest.fixture(scope="module")
def fitted():
    train = torch.cat([positions(z) for z in _features(20, 0)])
    return PCA.fit(train), train


def test_pca_finds_the_rank_and_the_codec_round_trips(fitted):
    pca, train = fitted
    assert pca.components_for(0.90) <= 3 and pca.components_for(0.999) >= 3
    needed = [pca.components_for(v) for v in (0.9, 0.95, 0.99)]
    assert needed == sorted(needed)
    z = _features(1, 1)[0]
    codec = PCACodec(pca, 3, 0.5, train)
    data = codec.encode(z)
    assert len(data) > HEADER.size
    decoded = codec.decode(data)
    expected = codec.dequantize(codec.quantize(z), (12, 16))
    assert decoded.shape == z.shape and torch.equal(decoded, expected)
    hat, nbytes = codec(z)
    assert nbytes == len(data) and torch.equal(hat, decoded)
    # values far outside the training range are escaped, still lossless
    wild = z * 50
    assert torch.equal(codec.decode(codec.encode(wild)), codec.dequantize(codec.quantize(wild), (12, 16)))
    with pytest.raises(PacketError):  # a bitstream of another setting is refused, not misread
        PCACodec(pca, 2, 0.5, train).decode(data)
    with pytest.raises(PacketError):
        codec.decode(data[:4])


def test_more_components_cost_more_bytes_and_reconstruct_better(fitted):
    pca, train = fitted
    z = _features(1, 2)[0]
    sizes, errors = [], []
    for n in (1, 2, 3, 8):
        codec = PCACodec(pca, n, 0.25, train)
        sizes.append(len(codec.encode(z)))
        errors.append(codec.nmse(positions(z)))
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    coarse, fine = PCACodec(pca, 3, 2.0, train), PCACodec(pca, 3, 0.1, train)
    assert len(coarse.encode(z)) < len(fine.encode(z)) and coarse.nmse(positions(z)) > fine.nmse(positions(z))


def test_front_of_tied_bytes_keeps_the_better_point():
    assert ea.pareto_front([(100.0, 0.0), (100.0, 1.0)]) == [(100.0, 1.0)]
    assert ea.bytes_at([(100.0, 0.0), (100.0, 1.0)], 1.0) == (0.0, 100.0)


def test_bytes_at_equal_accuracy_by_hand():
    pts = [(1000, 0.5), (4000, 0.7), (2000, 0.4)]  # the 2000-byte point is dominated
    assert ea.pareto_front(pts) == [(1000, 0.5), (4000, 0.7)]
    lo, hi = ea.bytes_at(pts, 0.6)  # halfway in mAP -> geometric mean of the bytes
    assert lo == hi == pytest.approx(2000.0)
    assert ea.bytes_at(pts, 0.8) == (4000, math.inf)  # never reached: more than its best point
    assert ea.bytes_at(pts, 0.3) == (0.0, 1000)  # reached by the cheapest point: at most that
    assert ea.best_of([(3000.0, 3000.0), (5000.0, 5000.0)]) == (3000.0, 3000.0)
    assert ea.best_of([(3000.0, 3000.0), (2000.0, math.inf)]) == (2000.0, 3000.0)
    assert ea.best_of([(3000.0, 3000.0), (0.0, 1000.0)]) == (0.0, 1000.0)
    assert [ea.interval_text(*i, ".0f") for i in ((5.0, 5.0), (2.0, math.inf), (0.0, 7.0), (2.0, 3.0))] == \
        ["5", "> 2", "< 7", "2-3"]
    rows = [{"method": "ours", "width": 1.0, "bytes_mean": 1000.0, "map": 0.6}] + \
        [{"method": "jpeg", "bytes_mean": b, "map": m} for b, m in pts] + \
        [{"method": "webp", "bytes_mean": 3000.0, "map": 0.55}]
    h = ea.headline(rows)[0]
    assert h["jpeg_ratio_min"] == h["jpeg_ratio_max"] == pytest.approx(2.0)
    assert h["webp_bytes_min"] == 3000.0 and h["webp_bytes_max"] is None  # WebP never gets there
    assert h["best_image_bytes_min"] == h["best_image_bytes_max"] == pytest.approx(2000.0)
    assert "| 1 | 1000 | 60.0 | 2000 | > 3000 |" in ea.headline_table([h])


# byte counts may tie (two settings of one codec with the same mean)
curves = st.lists(st.tuples(st.integers(100, 2000).map(float), st.floats(0.0, 1.0)), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(curves, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_bytes_at_stays_within_its_bracketing_front_points_and_grows_with_the_target(points, t1, t2):
    front = ea.pareto_front(points)
    assert all(b0 < b1 and m0 < m1 for (b0, m0), (b1, m1) in zip(front, front[1:])), front
    assert all(any(fb <= b and fm >= m for fb, fm in front) for b, m in points)  # every point is dominated
    low, high = sorted((t1, t2))
    lo, hi = ea.bytes_at(points, low)
    assert lo <= hi
    reached = [b for b, m in front if m >= low]
    if not reached:
        assert (lo, hi) == (front[-1][0], math.inf)
    elif reached[0] == front[0][0]:
        assert (lo, hi) == (0.0, front[0][0])
    else:
        prev = max(b for b, _ in front if b < reached[0])
        assert lo == hi and prev * (1 - 1e-9) <= lo <= reached[0] * (1 + 1e-9)
    lo2, hi2 = ea.bytes_at(points, high)  # a higher target never costs fewer bytes
    assert lo2 >= lo * (1 - 1e-9) and hi2 >= hi * (1 - 1e-9)


def _assert_headline_follows_the_rows(h: dict, rows: list[dict]) -> None:
    """One width's headline against the measured rows: our bytes and mAP, each family's bytes for
    that mAP bracketed by its own front points, ratios to our bytes, best image = the cheaper of JPEG/WebP."""
    mine = next(r for r in rows if r["method"] == "ours" and r["width"] == h["width"])
    assert (h["ours_bytes"], h["ours_map"]) == (mine["bytes_mean"], mine["map"])
    target = mine["map"]
    for family in ea.HEADLINE_FAMILIES:
        front = ea.pareto_front([(r["bytes_mean"], r["map"]) for r in rows if r["method"] == family])
        lo, hi = h[f"{family}_bytes_min"], h[f"{family}_bytes_max"]
        reached = [b for b, m in front if m >= target]
        if not reached:  # its best point stays below: at least that point's bytes, no upper bound
            assert hi is None and lo == front[-1][0], (family, h, front)
        elif reached[0] == front[0][0]:  # its cheapest point already gets there: at most that
            assert lo == 0.0 and hi == front[0][0], (family, h, front)
        else:  # interpolated between the two front points that bracket the target
            i = [b for b, _ in front].index(reached[0])
            (b0, m0), (b1, m1) = front[i - 1], front[i]
            assert m0 < target <= m1 and lo == hi and b0 < lo <= b1, (family, h, front)
        assert h[f"{family}_ratio_min"] == pytest.approx(lo / mine["bytes_mean"])
        assert h[f"{family}_ratio_max"] == (None if hi is None else pytest.approx(hi / mine["bytes_mean"]))
    inf = math.inf
    assert h["best_image_bytes_min"] == min(h["jpeg_bytes_min"], h["webp_bytes_min"])
    assert (h["best_image_bytes_max"] or inf) == min(h["jpeg_bytes_max"] or inf, h["webp_bytes_max"] or inf)


def test_rate_accuracy_command_small_run(tmp_path, tiny_model_path, tiny_data, capsys):
    out = tmp_path / "ra"
    rc = main(["bench", "rate-accuracy", "--model", str(tiny_model_path), "--data", str(tiny_data),
               "--fit-data", str(tiny_data), "--max-images", "6", "--fit-images", "6", "--quick", "--threads", "2",
               "--out", str(out)])
    assert rc == 0
    for name in ("rate_accuracy.json", "rate_accuracy.csv", "headline.json", "headline.csv", "rate_accuracy.png",
                 "table.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = json.loads((out / "rate_accuracy.json").read_text())
    assert res["machine"]["threads"] == 2 and "bench rate-accuracy" in res["command"] and "--quick" in res["command"]
    rows = res["rows"]
    assert {r["method"] for r in rows} == {"teacher", "ours", "jpeg", "webp", "png", "pca"}
    assert all(r["images"] == 6 and 0 <= r["map"] <= 1 and 0 <= r["miou"] <= 1 for r in rows)
    assert all(r["bytes_mean"] > 0 for r in rows if r["method"] != "teacher")
    jpeg = sorted((r["quality"], r["bytes_mean"]) for r in rows if r["method"] == "jpeg")
    assert len(jpeg) >= 3 and all(a[1] < b[1] for a, b in zip(jpeg, jpeg[1:])), jpeg
    png = next(r for r in rows if r["method"] == "png")
    assert png["bytes_mean"] > max(b for _, b in jpeg)  # lossless costs more than any JPEG
    ours = sorted((r["width"], r["bytes_mean"]) for r in rows if r["method"] == "ours")
    assert [w for w, _ in ours] == [0.25, 0.5, 0.75, 1.0]
    heads = res["headline"]
    assert [h["width"] for h in heads] == [w for w, _ in ours]
    assert json.loads((out / "headline.json").read_text())["rows"] == heads
    for h in heads:
        _assert_headline_follows_the_rows(h, rows)
    text = (out / "table.md").read_text()
    assert "| jpeg | q95 |" in text and "Bytes at equal accuracy" in text

    # another model on the same frames reuses those baselines and measures only its widths
    again = ["bench", "rate-accuracy", "--model", str(tiny_model_path), "--data", str(tiny_data), "--fit-data",
             str(tiny_data), "--fit-images", "6", "--threads", "1", "--baselines", str(out)]
    assert main(again + ["--max-images", "6", "--out", str(tmp_path / "reused")]) == 0
    reused = json.loads((tmp_path / "reused/rate_accuracy.json").read_text())
    baselines = [r for r in rows if r["method"] not in ("teacher", "ours")]
    assert [r for r in reused["rows"] if r["method"] not in ("teacher", "ours")] == baselines
    assert [r["width"] for r in reused["rows"] if r["method"] == "ours"] == [0.25, 0.5, 0.75, 1.0]
    assert reused["baselines"] == str(out) and "Baselines taken from" in (tmp_path / "reused/table.md").read_text()
    assert main(again + ["--max-images", "5", "--out", str(tmp_path / "x")]) == 2  # other frames
    assert "measured otherwise: images 6 there, 5 here" in capsys.readouterr().err
    assert main(again + ["--max-images", "6", "--fit-images", "5", "--out", str(tmp_path / "x")]) == 2  # other PCA fit
    assert "measured otherwise: fit_images 6 there, 5 here" in capsys.readouterr().err
    res["rows"][0]["map"] += 0.1
    (out / "rate_accuracy.json").write_text(json.dumps(res))
    assert main(again + ["--max-images", "6", "--out", str(tmp_path / "x")]) == 2
    assert "another teacher" in capsys.readouterr().err
    assert main(again + ["--max-images", "6", "--baselines", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no readable rate-accuracy results" in capsys.readouterr().err

def test_analyze_split_command_small_run(tmp_path, tiny_model_path, tiny_data):
    out = tmp_path / "as"
    rc = main(["analyze-split", "--model", str(tiny_model_path), "--data", str(tiny_data), "--fit-data",
               str(tiny_data), "--max-images", "4", "--fit-images", "4", "--splits", "5,7", "--quick",
               "--out", str(out)])
    assert rc == 0
    for name in ("analyze_split.json", "analyze_split.csv", "analyze_split.png", "table.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = json.loads((out / "analyze_split.json").read_text())
    assert [s["split"] for s in res["splits"]] == [5, 7] and "analyze-split" in res["command"]
    for s in res["splits"]:
        assert 1 <= s["components_90"] <= s["components_95"] <= s["components_99"] <= s["channels"]
        assert s["onboard_mmacs"] > 0
        pts = sorted((r["components"], r["bytes_mean"], r["nmse_fit"])
                     for r in res["rows"] if r["split"] == s["split"])
        assert [n for n, _, _ in pts] == [s["components_90"], s["components_99"]] and pts[0][1] > HEADER.size
        assert pts[0][0] < pts[1][0], pts  # the tiny model's features need more components for 99% than for 90%
        assert pts[0][1] < pts[1][1] and pts[0][2] > pts[1][2], pts  # more components: more bytes, less error
    assert res["splits"][0]["onboard_mmacs"] < res["splits"][1]["onboard_mmacs"]
    assert "Suggested split" in (out / "table.md").read_text()


def test_clear_errors(tmp_path, tiny_model_path, tiny_data, capsys):
    rc = main(["bench", "rate-accuracy", "--model", str(tiny_model_path), "--data", str(tmp_path / "nowhere"),
               "--quick", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no dataset at" in capsys.readouterr().err
    rc = main(["analyze-split", "--model", str(tiny_model_path), "--data", str(tiny_data), "--fit-data",
               str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no dataset at" in capsys.readouterr().err
    rc = main(["analyze-split", "--model", str(tiny_model_path), "--splits", "7,9", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "within 1..7" in err and "stem[6]" in err
    assert not (tmp_path / "o").exists()
