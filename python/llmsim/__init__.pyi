from typing import Any, Iterable, Mapping, Optional, Union

import pandas as pd

class Config(dict):
    """One run's settings: ``llmsim run``'s flags with ``_`` for ``-`` (defaults: the seed study's)."""
    def __init__(
        self,
        config: Optional[Mapping[str, Any]] = None,
        *,
        scheduler: str = ...,
        workload: str = ...,
        rate: Optional[float] = ...,
        requests: Optional[int] = ...,
        warmup: Optional[int] = ...,
        arrivals: Optional[str] = ...,
        prompt: Optional[str] = ...,
        decode: Optional[str] = ...,
        lengths_from: Optional[str] = ...,
        cost: Union[str, Mapping[str, Any]] = ...,
        c: float = ...,
        a: float = ...,
        b0: float = ...,
        cost_dist: str = ...,
        noise_cv: Optional[float] = ...,
        k: Optional[int] = ...,
        max_decode_batch: Optional[int] = ...,
        max_seqs: Optional[int] = ...,
        max_batched_tokens: Optional[int] = ...,
        watermark: Optional[float] = ...,
        preemption: str = ...,
        swap_gbps: Optional[float] = ...,
        kv_capacity: Optional[int] = ...,
        gpu_mem_gb: Optional[float] = ...,
        gpu_mem_util: float = ...,
        model: str = ...,
        gpu: Optional[str] = ...,
        tp: int = ...,
        pp: int = ...,
        block_size: int = ...,
        prefill_gpus: Optional[int] = ...,
        decode_gpus: Optional[int] = ...,
        kv_link_gbps: Optional[float] = ...,
        kv_link_latency: Optional[float] = ...,
        gpus: int = ...,
        router: str = ...,
        prefix_cache: bool = ...,
        cpu_kv_blocks: Optional[int] = ...,
        turns: Optional[int] = ...,
        think: Optional[float] = ...,
        system_prompt: Optional[int] = ...,
        system_prompts: Optional[int] = ...,
        seed: int = ...,
        reps: int = ...,
    ) -> None: ...
    @classmethod
    def from_json(cls, text_or_dict: Union[str, Mapping[str, Any]]) -> Config: ...
    def to_json(self) -> str: ...
    def validate(self) -> Config: ...

class Result:
    """The result of :func:`run`: ``summary`` (the ``--json`` dict), ``config``."""
    config: Config
    summary: dict
    def to_pandas(self) -> pd.DataFrame: ...
    def requests(self, rep: int = 0) -> pd.DataFrame: ...

def run(config: Union[Config, Mapping[str, Any], None] = None, **settings: Any) -> Result: ...
def sweep(configs: Iterable[Union[Config, Mapping[str, Any]]]) -> pd.DataFrame: ...
def validate(config: Union[Config, Mapping[str, Any], None] = None, **settings: Any) -> Config: ...
def calibrate(profile: str) -> dict: ...
def fidelity(runs: str, cost: Optional[str] = None, max_requests: Optional[int] = None,
             seed: int = 42) -> pd.DataFrame: ...
def cost_presets() -> list[str]: ...
def cost_preset(name: str) -> str: ...

class PlanResult:
    """The answer of :func:`plan`: ``points``, ``runners_up``, ``front``, ``skipped``
    (DataFrames), ``cheapest`` (dict or None), ``target_rps``, ``raw`` (the ``--json``
    dict)."""
    raw: dict
    target_rps: float
    points: pd.DataFrame
    cheapest: Optional[dict]
    runners_up: pd.DataFrame
    front: pd.DataFrame
    skipped: pd.DataFrame
    def to_json(self) -> str: ...

def plan(
    config: Union[Config, Mapping[str, Any], None] = None,
    *,
    executor: str = "local",
    ray_address: Optional[str] = None,
    slo: Union[str, Mapping[str, Any], Iterable[Union[str, Mapping[str, Any]]], None] = ...,
    attainment: Optional[float] = ...,
    allow_growth: bool = ...,
    gpu_types: Iterable[Union[str, Mapping[str, Any]]] = ...,
    schedulers: Iterable[str] = ...,
    gpu_counts: Iterable[int] = ...,
    routers: Iterable[str] = ...,
    ks: Iterable[int] = ...,
    max_decode_batches: Iterable[int] = ...,
    max_seqs_values: Iterable[int] = ...,
    token_budgets: Iterable[int] = ...,
    preemptions: Iterable[str] = ...,
    splits: Iterable[Union[str, tuple[int, int]]] = ...,
    target_rate: Optional[float] = ...,
    reps: int = ...,
    rel_tol: float = ...,
    max_evals: int = ...,
    runners_up: int = ...,
    **settings: Any,
) -> PlanResult: ...
