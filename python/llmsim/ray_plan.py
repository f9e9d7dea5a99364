"""The planner on a Ray cluster: one Ray task per family of deployments, each calling the
Rust search of that family (``_llmsim.plan_family``), assembled in Rust as a local run is.

``python -m llmsim.ray_plan ADDRESS`` reads a plan (the JSON ``llmsim plan`` builds) on
stdin and prints the answer's JSON on stdout: ``llmsim plan --ray ADDRESS`` runs it.
ADDRESS is a Ray cluster's address (``HOST:6379``, ``ray://HOST:10001`` for Ray Client, or
``auto`` for the cluster this machine belongs to).
"""

from __future__ import annotations

import sys
from typing import Optional

from . import _llmsim


def run_on_ray(plan_json: str, families: int, address: Optional[str] = None) -> str:
    """The answer (JSON) of a checked plan with ``families`` families, searched on Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)

    @ray.remote
    def family(text: str, index: int) -> str:
        from llmsim import _llmsim as native

        return native.plan_family(text, index)

    parts = ray.get([family.remote(plan_json, i) for i in range(families)])
    return _llmsim.plan_assemble(plan_json, parts)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmsim.ray_plan ADDRESS < plan.json")
    text = sys.stdin.read()
    families, _ = _llmsim.plan_families(text)
    sys.stdout.write(run_on_ray(text, families, sys.argv[1]))


if __name__ == "__main__":
    main()
