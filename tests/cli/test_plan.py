"""`hps plan`: memory per table, tier and device from the config alone, and hit-rate predictions that replay a
trace through the dynamic cache."""

import json

import numpy as np

from test_cli import deployment, run  # noqa: F401 (fixture)


def test_plan_reports_every_table_and_tier(deployment):
    tmp_path, tables, config = deployment
    path = config()
    data = json.loads(run("plan", path, "--json").stdout)
    assert [(t["table"], t["rows"], t["dimension"]) for t in data["tables"]] == [("item", 5000, 16), ("user", 800, 7)]
    item = data["tables"][0]
    assert item["rawBytes"] == 5000 * (8 + 16 * 4)
    assert item["cache"].startswith("dynamic (250 slots)")
    # The hash map holds every row: at least the raw bytes, at most twice them (index and page rounding).
    assert item["rawBytes"] <= item["volatileBytes"] <= 2 * item["rawBytes"] + 4096 * 64 * 8
    assert [d["device"] for d in item["devices"]] == [0] and item["devices"][0]["cacheBytes"] > 0
    assert data["sessions"][0]["bytesPerDevice"] > 0
    assert data["hostBytes"] >= item["volatileBytes"] + data["tables"][1]["volatileBytes"]
    assert data["hostFits"] is True
    text = run("plan", path).stdout
    assert "item" in text and "user" in text and "host:" in text


def test_plan_predicts_hit_rates_for_a_zipf_trace(deployment):
    tmp_path, tables, config = deployment
    data = json.loads(run("plan", config(), "--json", "--model", "m", "--table", "item", "--zipf", "1.1",
                          "--fractions", "0.02", "0.2", "0.9", "--target", "0.5").stdout)
    p = data["prediction"]
    rates = [s["hitRatePerKey"] for s in p["sizes"]]
    assert [s["fraction"] for s in p["sizes"]] == [0.02, 0.05, 0.2, 0.9]
    assert [s["configured"] for s in p["sizes"]] == [False, True, False, False]
    assert rates == sorted(rates) and 0 < rates[0] < rates[-1] <= 1  # a bigger cache never hits less here
    assert p["suggestedFraction"] == min(s["fraction"] for s in p["sizes"] if s["hitRatePerKey"] >= 0.5)


def test_plan_replays_a_trace_file(deployment):
    tmp_path, tables, config = deployment
    keys = tables["item"][0]
    trace = np.concatenate([np.tile(keys[:100], 50), keys[100:300]]).astype("<i8")
    trace_path = tmp_path / "trace.bin"
    trace.tofile(trace_path)
    data = json.loads(run("plan", config(), "--json", "--model", "m", "--table", "0", "--trace", str(trace_path), "--batch", "256",
                          "--fractions", "0.1", "0.5").stdout)
    p = data["prediction"]
    assert p["batch"] == 256 and str(len(trace)) in p["source"]
    # 100 hot keys fit every size tried: after the first batch they always hit.
    assert all(s["hitRatePerKey"] > 0.9 for s in p["sizes"])


def test_plan_errors_name_the_problem(deployment, tmp_path):
    _, _, config = deployment
    path = config()
    bad = tmp_path / "odd.bin"
    bad.write_bytes(b"1234567")
    result = run("plan", path, "--model", "m", "--table", "item", "--trace", str(bad), check=False)
    assert result.returncode == 1 and "odd.bin" in result.stderr and "multiple of 8" in result.stderr
    result = run("plan", path, "--trace", str(bad), check=False)
    assert result.returncode != 0 and "--model" in result.stderr
    result = run("plan", path, "--model", "nosuch", "--table", "0", "--zipf", "1.0", check=False)
    assert result.returncode == 1 and "nosuch" in result.stderr
    result = run("plan", str(tmp_path / "missing.json"), check=False)
    assert result.returncode == 1 and "missing.json" in result.stderr
