"""``llmsim.fidelity`` against the CLI's ``fidelity --out`` on the real vLLM runs in
``../shared/fidelity`` (skipped without them, unless ``LLMSIM_REQUIRE_SHARED=1``, as
``.ci/run`` sets), and its errors and skipped runs on small files of its own."""

import csv
import os
import pathlib
import subprocess
import tempfile

import pytest

import llmsim

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = pathlib.Path(os.environ.get("LLMSIM_BIN", ROOT / "target" / "release" / "llmsim"))
SHARED = pathlib.Path(os.environ.get("LLMSIM_SHARED", ROOT.parent / "shared"))
RUNS = SHARED / "fidelity" / "vllm_runs.csv"

HEADER = ("run_id,stage,model,gpu,tp,max_num_batched_tokens,max_num_seqs,gpu_memory_utilization,"
          "max_model_len,prefix_caching,stages,system_prompt_len,question_len,output_len,"
          "num_system_prompts,users_per_system_prompt,ttft_mean_ms,ttft_p90_ms,ttft_p99_ms,"
          "e2e_mean_ms,e2e_p90_ms,e2e_p99_ms,itl_mean_ms")


def row(run_id, model="meta-llama/Llama-3.1-8B-Instruct", max_model_len="4096", tp="1"):
    return (f"{run_id},-1,{model},H100-80GB,{tp},2048,128,,{max_model_len},unknown,0.5x20,"
            "100,400,50,2,2,40,50,60,500,600,700,9")


def write(tmp_path, *rows):
    path = tmp_path / "runs.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return str(path)


def shared_runs():
    if not RUNS.is_file():
        if os.environ.get("LLMSIM_REQUIRE_SHARED") == "1":
            pytest.fail(f"{RUNS} is missing and LLMSIM_REQUIRE_SHARED=1")
        pytest.skip(f"{RUNS} is missing (the shared inputs)")
    return RUNS


def test_the_real_runs_score_as_the_cli_scores_them():
    runs = shared_runs()
    df = llmsim.fidelity(str(runs))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "f.csv"
        subprocess.run([str(CLI), "fidelity", str(runs), "--out", str(out)], check=True,
                       capture_output=True)
        with out.open() as f:
            cli = list(csv.DictReader(f))
    # Every stage row of the 26 runs (whole run and each stage), 7 metrics each.
    assert len(df) == len(cli) and len(cli) % 7 == 0 and df.run_id.nunique() == 26
    for got, want in zip(df.itertuples(), cli):
        assert (got.run_id, str(got.stage), got.metric) == (want["run_id"], want["stage"], want["metric"])
        # The CLI writes 4 decimals.
        for col in ("measured", "predicted", "pct_error"):
            assert abs(getattr(got, col) - float(want[col])) <= 5e-5 + 1e-12 * abs(float(want[col]))
    assert df.attrs["skipped"] == {}
    whole = df[df.stage == -1]
    e2e = whole[whole.metric == "e2e_mean"].pct_error.abs().mean()
    assert abs(df.attrs["mape"]["e2e_mean"] - e2e) < 1e-9
    # The leave-one-run-out targets hold in sample too (the README's E2E 2.5%, TTFT 4.7%).
    assert e2e < 8 and df.attrs["mape"]["ttft_mean"] < 15


def test_unknown_and_rejected_runs_are_skipped_with_the_reason(tmp_path):
    path = write(tmp_path, row("ok"), row("nobody", model="nobody/NoModel-1B"),
                 row("long", max_model_len="549"))
    df = llmsim.fidelity(path, cost="vllm", max_requests=10)
    assert set(df.run_id) == {"ok"} and len(df) == 7
    assert set(df.metric) == {"ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90",
                              "e2e_p99", "itl_mean"}
    assert (df.predicted > 0).all()
    skipped = df.attrs["skipped"]
    assert skipped["nobody"].startswith("model:") and "nobody/NoModel-1B" in skipped["nobody"]
    assert skipped["long"].startswith("max_model_len:") and "550 tokens" in skipped["long"]


def test_bad_files_and_settings_raise_naming_them(tmp_path):
    bad = write(tmp_path, row("a", tp="0"))
    with pytest.raises(ValueError, match=r"^runs: .*runs\.csv.*line 2.*tp"):
        llmsim.fidelity(bad)
    good = write(tmp_path, row("a"))
    with pytest.raises(ValueError, match="^max_requests: must be at least 2"):
        llmsim.fidelity(good, max_requests=1)
    with pytest.raises(ValueError, match="^cost: 'nothere.toml'"):
        llmsim.fidelity(good, cost="nothere.toml")
    with pytest.raises(ValueError, match="^runs: "):
        llmsim.fidelity(str(tmp_path / "none.csv"))
