"""The llmsim Python package against the library's checks and the CLI's output."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import llmsim

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = pathlib.Path(os.environ.get("LLMSIM_BIN", ROOT / "target" / "release" / "llmsim"))

pytestmark = pytest.mark.filterwarnings("ignore:note. --max-batched-tokens")

SMALL = dict(scheduler="vllm", rate=4.0, cost="h200-llama3.1-8b", gpu_mem_gb=141,
             requests=2000, reps=3, prompt="uniform:16:2048", decode="geometric:128:1024")


def test_config_round_trips_through_json_and_the_resolved_config():
    cfg = llmsim.Config(**SMALL)
    assert llmsim.Config.from_json(cfg.to_json()) == cfg
    assert cfg["cost"] == {"kind": "preset", "name": "h200-llama3.1-8b"}
    # vLLM's budget defaults to the longest prefill a recompute rebuilds: 2048 + 1024 - 1.
    with pytest.warns(UserWarning, match="max-batched-tokens defaults to 3071"):
        resolved = cfg.validate()
    assert resolved["max_batched_tokens"] == 3071 and resolved["k"] is None
    assert resolved["warmup"] == 200
    # The resolved config is a fixed point, and runs the same.
    assert resolved.validate() == resolved
    assert llmsim.run(resolved).summary == llmsim.run(cfg).summary
    # Cost flags fold into the cost object, as on the command line.
    cfg = llmsim.Config(c=0.02, noise_cv=0.5)
    assert cfg["cost"] == {"kind": "noise", "cv": 0.5,
                           "base": {"kind": "linear", "c": 0.02, "a": 0.001, "b0": 0.0, "dist": "exp"}}
    assert llmsim.Config().validate()["rate"] == 0.5


@pytest.mark.parametrize("settings, field", [
    (dict(rate=-1.0), "rate"),
    (dict(scheduler="vllm", max_batched_tokens=64, max_seqs=16), "max_batched_tokens"),
    (dict(scheduler="vllm", kv_capacity=32), "kv_capacity"),
    (dict(reps=0), "reps"),
    (dict(prompt="uniform:9:3"), "prompt"),
    (dict(scheduler="fifo"), "scheduler"),
    (dict(sheduler="vllm"), "sheduler"),
    (dict(cost="roofline:tpu"), "cost"),
    (dict(noise_cv=11.0), "noise_cv"),
    (dict(cost_dist="weird"), "cost_dist"),
    (dict(model="gpt-9"), "model"),
    (dict(tp=2), "tp"),
    (dict(cost="roofline"), "gpu"),
    (dict(turns=3), "turns"),
    (dict(prefix_cache=True), "prefix_cache"),
    (dict(cpu_kv_blocks=10), "cpu_kv_blocks"),
])
def test_bad_settings_raise_value_error_naming_the_field(settings, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        llmsim.run(requests=500, **settings)


def test_results_equal_the_cli_json_for_the_same_config(tmp_path):
    r = llmsim.run(**SMALL)
    path = tmp_path / "run.json"
    path.write_text(llmsim.Config(SMALL).to_json())
    out = subprocess.run([str(CLI), "run", "--json", "--config", str(path)],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == r.summary
    df = r.to_pandas()
    assert list(df["rep"]) == [0, 1, 2]
    assert np.isclose(df["ttft.mean"].mean(), r.summary["ttft"]["mean"], rtol=1e-12)
    assert np.isclose(df["throughput_rps"].mean(), r.summary["throughput_rps"], rtol=1e-12)


def test_models_gpus_layouts_and_prefix_caching_are_settings():
    # --gpu's memory sizes the cache of each of a replica's 4 GPUs; 2 replicas are 8 GPUs.
    r = llmsim.run(scheduler="vllm", cost="roofline", gpu="h100", model="llama-3.1-70b",
                   tp=4, gpus=2, requests=200, rate=1.0)
    assert r.summary["gpus_total"] == 8
    assert r.summary["config"]["gpu_mem_gb"] == 80.0
    # A conversation's turns on one GPU find their earlier turns cached.
    r = llmsim.run(scheduler="vllm", workload="multiturn", turns=4, kv_capacity=200_000,
                   prefix_cache=True, router="session", gpus=2, requests=400, rate=1.0)
    assert r.summary["config"]["turns"] == 4
    assert r.summary["prefix_cache"]["token_hit_rate"] > 0.3


def test_per_request_records_agree_with_the_summary():
    cfg = dict(SMALL, reps=1)
    r = llmsim.run(**cfg)
    req = r.requests()
    assert len(req) == 2000 and list(req["id"]) == list(range(2000))
    measured = req[req["measured"]]
    assert len(measured) == r.summary["completed"] == 1800
    assert (req["arrival"].diff().dropna() >= 0).all()
    assert (req["arrival"] <= req["start"]).all()
    assert (req["start"] < req["first_token"]).all() and (req["first_token"] <= req["completion"]).all()
    # Means are exact sums in the summary; quantiles come from a histogram kept to 3
    # significant digits, hence the tolerance.
    assert np.isclose((measured["first_token"] - measured["arrival"]).mean(),
                      r.summary["ttft"]["mean"], rtol=1e-9)
    assert np.isclose((measured["completion"] - measured["arrival"]).mean(),
                      r.summary["e2e"]["mean"], rtol=1e-9)
    assert np.isclose((measured["completion"] - measured["arrival"]).quantile(0.99),
                      r.summary["e2e"]["p99"], rtol=2e-3)
    with pytest.raises(ValueError, match="^rep"):
        r.requests(1)


def test_sweep_keeps_the_order_and_equals_single_runs():
    rates = [3.0, 1.0, 2.0]
    configs = [llmsim.Config(SMALL, rate=x, reps=2) for x in rates]
    df = llmsim.sweep(configs)
    assert list(df["config.rate"]) == rates
    for row, cfg in zip(df.to_dict("records"), configs):
        single = llmsim.run(cfg).summary
        assert row["throughput_rps"] == single["throughput_rps"]
        assert row["ttft.p99"] == single["ttft"]["p99"]
    with pytest.raises(ValueError, match=r"^configs\[1\]: rate"):
        llmsim.sweep([configs[0], dict(rate=-1.0)])


def test_the_gil_is_released_while_simulating():
    ticks = 0
    done = threading.Event()

    def tick():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    llmsim.run(scheduler="b", rate=2.0, requests=300_000, reps=2)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    # A thread that sleeps 1 ms per tick gets a tick per few ms of a run that does not
    # hold the GIL (one per 50 ms leaves room for a loaded machine); with the GIL held
    # it would get none until the run ends.
    assert elapsed > 0.1 and ticks >= elapsed / 0.05, (elapsed, ticks)


def interrupt_after(code, wait=1.0):
    """Runs `code` in a fresh Python, sends SIGINT `wait` s after it printed 'started';
    returns (seconds from the signal to the process's end, its stderr)."""
    # A shell's background job inherits SIGINT ignored, and Python then leaves it ignored:
    # the child restores Ctrl-C's KeyboardInterrupt whatever it inherited.
    setup = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    proc = subprocess.Popen([sys.executable, "-c", setup + "import llmsim; print('started', flush=True); " + code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(wait)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return time.perf_counter() - sent, err


@pytest.mark.parametrize("call", [
    # One replication of 100M requests: minutes of simulation, so only the engine's own
    # cancellation check can stop it in time.
    "llmsim.run(scheduler='b', rate=2.0, requests=100_000_000, reps=1)",
    "llmsim.sweep([dict(scheduler='b', rate=2.0, requests=100_000_000, reps=1)])",
])
def test_ctrl_c_interrupts_one_long_replication(call):
    took, err = interrupt_after(call)
    # The engine looks at the flag every 4,096 events (about a millisecond) and Python
    # polls for the signal every 20 ms; 5 s leaves room for a loaded machine and the
    # interpreter's exit, far below the minutes the run would take.
    assert took < 5, took
    assert "KeyboardInterrupt" in err, err


def test_presets_and_calibration_are_reachable():
    assert "h200-llama3.1-8b" in llmsim.cost_presets()
    assert "[profiled]" in llmsim.cost_preset("h200-llama3.1-8b")
    with pytest.raises(ValueError, match="^cost"):
        llmsim.cost_preset("tpu")
    fit = llmsim.calibrate(str(ROOT / "tools" / "profiles" / "h100_llama-3.1-8b.csv"))
    assert "[profiled]" in fit["toml"] and 0 < fit["mape"] < 0.05 and fit["max_error"] >= fit["mape"]
    with pytest.raises(ValueError, match="^profile"):
        llmsim.calibrate("/nonexistent.csv")
