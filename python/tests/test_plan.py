"""``llmsim.plan`` against ``llmsim plan``, its checks, and on a local Ray cluster.

The Ray tests start a head on 127.0.0.1 with two CPUs (two worker processes run the
tasks), search through it from Python and through ``llmsim plan --ray``, compare with the
local answer and stop Ray. They are skipped when ray is not installed, unless
``LLMSIM_REQUIRE_RAY=1`` (set by ``.ci/run``, which installs it).
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest

import llmsim

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = pathlib.Path(os.environ.get("LLMSIM_BIN", ROOT / "target" / "release" / "llmsim"))

#: A small search: Schedulers A and B on 1 to 3 GPUs, p99 TTFT at most 3 s at 2 req/s.
SMALL = dict(requests=2000, schedulers=["a", "b"], gpu_counts=[1, 2, 3], slo=["ttft:p99:3"],
             target_rate=2.0)
SMALL_FLAGS = ["--requests", "2000", "--schedulers", "a,b", "--gpu-counts", "1-3",
               "--slo", "ttft:p99:3", "--target-rate", "2", "--json"]


def cli_plan(*extra, env=None):
    out = subprocess.run([str(CLI), "plan", *SMALL_FLAGS, *extra], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_plan_is_the_cli_answer():
    p = llmsim.plan(**SMALL)
    assert p.raw == cli_plan()
    assert len(p.points) == 6
    assert p.cheapest is not None and p.cheapest["meets_target"]
    assert p.cheapest["capacity_rps"] >= 2.0 * 0.9
    # The front rises in price and falls in latency.
    assert list(p.front["usd_per_hour"]) == sorted(p.front["usd_per_hour"])
    assert list(p.front["latency_s"]) == sorted(p.front["latency_s"], reverse=True)


@pytest.mark.parametrize("settings, field", [
    (dict(ks=[0], schedulers=["b"]), "ks"),
    (dict(gpu_counts=[0]), "gpu_counts"),
    (dict(slo=["ttft:p42:1"]), "slo"),
    (dict(slo=["ttft"]), "slo"),
    (dict(attainment=0.9), "attainment"),
    (dict(reps=0), "reps"),
    (dict(rel_tol=2.0), "rel_tol"),
    (dict(target_rate=-1.0), "target_rate"),
    (dict(gpu_types=["x=linear@0"]), "gpu_types"),
    (dict(splits=[(0, 1)]), "splits"),
    (dict(rate=-1.0), "rate"),
    (dict(nonsense=1), "nonsense"),
])
def test_bad_settings_raise_value_error_naming_them(settings, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        llmsim.plan(**settings)


def test_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="^executor"):
        llmsim.plan(**SMALL, executor="dask")


def test_deployments_that_do_not_build_are_skipped():
    # vllm prefills whole 128-token prompts: a 64-token budget cannot hold them.
    space = dict(requests=1000, max_seqs=32, reps=2, slo=["ttft:p99:3"])
    p = llmsim.plan(**space, schedulers=["vllm", "sarathi"], token_budgets=[64, 256])
    assert len(p.points) == 3
    assert list(p.skipped["label"]) == ["linear vllm x1 round-robin tokens=64"]
    assert list(p.skipped["field"]) == ["max-batched-tokens"]
    with pytest.raises(ValueError, match="^max_batched_tokens"):
        llmsim.plan(**space, schedulers=["vllm"], token_budgets=[64])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with two CPUs, stopped after the module's tests."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("LLMSIM_REQUIRE_RAY") == "1":
            raise
        pytest.skip("ray is not installed (pip install ray)")
    ray_bin = shutil.which("ray", path=str(pathlib.Path(sys.executable).parent)) or "ray"
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    start = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", str(temp),
             "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True)
    address = f"127.0.0.1:{port}"
    try:
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True)


def test_ray_gives_exactly_the_local_answer(ray_cluster):
    local = llmsim.plan(**SMALL)
    remote = llmsim.plan(**SMALL, executor="ray", ray_address=ray_cluster)
    assert remote.to_json() == local.to_json()


def test_cli_ray_gives_exactly_the_local_answer(ray_cluster):
    env = dict(os.environ, LLMSIM_PYTHON=sys.executable)
    assert cli_plan("--ray", ray_cluster, env=env) == cli_plan()
