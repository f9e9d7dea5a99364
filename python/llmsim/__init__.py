"""llmsim: a discrete-event simulator of LLM inference serving, from Python.

    >>> import llmsim
    >>> r = llmsim.run(scheduler="vllm", rate=4.0, cost="h200-llama3.1-8b", gpu_mem_gb=141,
    ...                requests=2000, reps=3)
    >>> r.summary["ttft"]["p99"]           # seconds, as `llmsim run --json` prints it
    >>> r.to_pandas()                      # one row per replication
    >>> r.requests()                       # one row per request (replication 0)
    >>> llmsim.sweep([llmsim.Config(scheduler=s, rate=2.0) for s in ("orca", "vllm")])
    >>> p = llmsim.plan(rate=2.0, requests=5000, schedulers=["a", "b"], gpu_counts=[1, 2, 3],
    ...                 slo=["ttft:p99:2"], target_rate=2.0)   # executor="ray" on a cluster
    >>> p.cheapest, p.front                  # a dict, a DataFrame

Settings are `llmsim run`'s flags with ``_`` for ``-`` (see ``llmsim.Config``). Times are
seconds, rates requests per second, lengths tokens. A setting out of range raises
``ValueError`` naming it. Simulation runs in Rust with the GIL released; Ctrl-C stops a
run within milliseconds, even inside one replication.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np
import pandas as pd

from . import _llmsim

__all__ = [
    "Config",
    "Result",
    "run",
    "sweep",
    "validate",
    "calibrate",
    "fidelity",
    "cost_presets",
    "cost_preset",
    "plan",
    "PlanResult",
]

#: The library's default config (the seed study's run).
_DEFAULT = json.loads(_llmsim.default_config())

#: The cost flags of ``llmsim run``, folded into the config's ``cost`` object.
_COST_FLAGS = ("c", "a", "b0", "cost_dist", "noise_cv")


class Config(dict):
    """One run's settings: a dict of ``llmsim run``'s flags with ``_`` for ``-``.

    ``Config()`` holds the defaults (the seed study's); keyword arguments override them.
    ``cost`` takes ``--cost``'s forms ("linear", a preset name such as
    "h200-llama3.1-8b", a preset TOML file, "roofline:h100") or the config's cost object
    (``{"kind": "linear", "c": 0.01, "a": 0.001, "b0": 0, "dist": "exp"}``), and ``c``,
    ``a``, ``b0``, ``cost_dist`` and ``noise_cv`` set its parameters as the flags do.
    A value ``None`` means the default, which may depend on other settings (the warm-up
    is 10% of the requests). ``Config.from_json(r.summary["config"])`` and
    ``json.dumps(config)`` round-trip with ``llmsim run --config FILE.json``.
    """

    def __init__(self, config: Optional[Mapping[str, Any]] = None, **settings: Any):
        super().__init__(json.loads(json.dumps(_DEFAULT)))
        merged = dict(config or {})
        merged.update(settings)
        cost_flags = {k: merged.pop(k) for k in _COST_FLAGS if k in merged}
        unknown = sorted(set(merged) - set(self))
        if unknown:
            raise ValueError(
                f"{unknown[0]}: not a setting (allowed: {', '.join(sorted(self))}, "
                f"{', '.join(_COST_FLAGS)})"
            )
        self.update(merged)
        cost = self["cost"]
        if isinstance(cost, str) or cost_flags:
            spec = cost if isinstance(cost, str) else None
            # A model named by string starts from the default parameters, as ``--cost``.
            current = json.dumps(_DEFAULT["cost"] if spec is not None else cost)
            text, notes = _llmsim.cost_spec(current, spec, **cost_flags)
            for note in notes:
                warnings.warn(note, stacklevel=2)
            self["cost"] = json.loads(text)

    @classmethod
    def from_json(cls, text_or_dict: Union[str, Mapping[str, Any]]) -> "Config":
        """A config from its JSON text or dict (the ``config`` of a ``--json`` output)."""
        data = json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
        return cls(data)

    def to_json(self) -> str:
        """The config as JSON, readable by ``llmsim run --config FILE.json``."""
        return json.dumps(self)

    def validate(self) -> "Config":
        """Checks every setting (ValueError naming the first bad one); returns the resolved
        config: every setting the run uses filled in, the others ``None``."""
        resolved, notes = _llmsim.validate(self.to_json())
        _warn(notes)
        return Config(json.loads(resolved))


def _warn(notes: Iterable[str]) -> None:
    for note in notes:
        warnings.warn(note, stacklevel=3)


def _config(config: Union[Config, Mapping[str, Any], None], settings: Mapping[str, Any]) -> Config:
    if isinstance(config, Config) and not settings:
        return config
    return Config(config, **settings)


class Result:
    """The result of :func:`run`.

    ``summary`` is the dict ``llmsim run --json`` prints (means over replications, with
    ``ci95`` half-widths when ``reps > 1``; seconds, requests/s, tokens/s, fractions), its
    ``config`` the resolved config. ``to_pandas()`` gives one row per replication,
    ``requests(rep)`` one row per request.
    """

    def __init__(self, config: Config, summary: dict, replications: list):
        self.config = config
        self.summary = summary
        self._replications = replications

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<llmsim.Result {s['config']['scheduler']} rate={s['config']['rate']} "
            f"reps={s['config']['reps']}: throughput {s['throughput_rps']:.4g} req/s, "
            f"TTFT p99 {s['ttft']['p99']} s, unstable={s['unstable']}>"
        )

    def to_pandas(self) -> pd.DataFrame:
        """One row per replication: every summary field, nested ones joined by ``.``
        (``ttft.p99``), per-GPU lists as lists."""
        df = pd.json_normalize(self._replications)
        df.insert(0, "rep", range(len(df)))
        return df

    def requests(self, rep: int = 0) -> pd.DataFrame:
        """Replication ``rep``'s requests, simulated again with per-request records:
        ``id``, ``arrival``, ``start``, ``first_token``, ``completion`` (seconds from the
        start of the run), ``gpu``, ``prompt`` (L) and ``decode`` (B) in tokens, and
        ``measured`` (False for warm-up requests), as numpy columns."""
        columns = _llmsim.requests(self.config.to_json(), rep)
        kinds = {"measured": np.uint8, "id": np.uint32, "prompt": np.uint32,
                 "decode": np.uint32, "gpu": np.uint32}
        data = {
            name: np.frombuffer(buf, dtype=np.dtype(kinds.get(name, np.float64)).newbyteorder("<"))
            for name, buf in columns.items()
        }
        data["measured"] = data["measured"].astype(bool)
        order = ["id", "arrival", "start", "first_token", "completion", "gpu", "prompt",
                 "decode", "measured"]
        return pd.DataFrame({k: data[k] for k in order})


def run(config: Union[Config, Mapping[str, Any], None] = None, **settings: Any) -> Result:
    """Simulates one configuration: a :class:`Config`, a dict, or settings as keyword
    arguments (``run(scheduler="vllm", rate=4.0, reps=10)``). Raises ``ValueError`` naming
    a bad setting; warns about settings without effect."""
    cfg = _config(config, settings)
    doc, reps, notes = _llmsim.run(cfg.to_json())
    _warn(notes)
    return Result(cfg, json.loads(doc), [json.loads(r) for r in reps])


def sweep(configs: Iterable[Union[Config, Mapping[str, Any]]]) -> pd.DataFrame:
    """Runs many configurations in parallel (in Rust) and returns one DataFrame with a row
    per configuration, in the given order: its resolved settings, prefixed ``config.``,
    and its summary's fields as in :meth:`Result.to_pandas`."""
    cfgs = [c if isinstance(c, Config) else Config(c) for c in configs]
    docs = [json.loads(d) for d in _llmsim.sweep([c.to_json() for c in cfgs])]
    return pd.json_normalize(docs)


def validate(config: Union[Config, Mapping[str, Any], None] = None, **settings: Any) -> Config:
    """Checks a configuration without running it; returns the resolved :class:`Config`.
    Raises ``ValueError`` naming the first bad setting and its allowed range."""
    return _config(config, settings).validate()


def calibrate(profile: str) -> dict:
    """Fits the profiled cost model to a GPU profile CSV (as ``llmsim calibrate``).
    Returns ``{"toml": preset text, "mape": mean relative error, "max_error": largest}``;
    save the text to a file and pass its path as ``cost``."""
    toml, mape, max_error = _llmsim.calibrate(str(profile))
    return {"toml": toml, "mape": mape, "max_error": max_error}


def fidelity(runs: str, cost: Optional[str] = None, max_requests: Optional[int] = None,
             seed: int = 42) -> pd.DataFrame:
    """Scores the simulator on a real engine's runs file (``llmsim fidelity RUNS``, the
    same library function; the format of ``shared/fidelity/README.md``, with a
    ``run_metadata.csv`` beside it read too). ``cost`` is ``--cost`` (default: the
    built-in serving preset ``vllm``); ``max_requests`` caps the requests simulated per
    stage. Returns one row per run, stage (-1 the whole run) and metric, with the
    columns ``llmsim fidelity --out`` writes: ``run_id, stage, metric, measured,
    predicted, pct_error`` (ms, ms, signed percent). ``attrs["skipped"]`` maps each run
    that could not be simulated to the reason; ``attrs["mape"]`` maps each metric to its
    mean absolute percentage error over the runs, each by its whole-run row (or its
    stages' mean when it has none). A bad file or setting raises
    ``ValueError`` naming it (file, line and field for a format error)."""
    rows, skipped, mape = _llmsim.fidelity(str(runs), cost, max_requests, seed)
    df = pd.DataFrame(rows, columns=["run_id", "stage", "metric", "measured", "predicted",
                                     "pct_error"])
    df.attrs["skipped"] = dict(skipped)
    df.attrs["mape"] = dict(mape)
    return df


def cost_presets() -> list:
    """Names of the built-in cost presets, usable as ``cost=NAME``."""
    return list(_llmsim.cost_presets())


def cost_preset(name: str) -> str:
    """The built-in preset ``name`` as TOML text (its source and fitted parameters)."""
    return _llmsim.cost_preset(name)


class PlanResult:
    """The answer of :func:`plan`: ``points`` (a DataFrame, one row per deployment, in the
    order the space expands: its label, price per hour, goodput capacity ``capacity_rps``
    with its 95% half-width, latencies and price per million tokens at the target rate),
    ``cheapest`` (the cheapest deployment meeting the objectives at the target rate, as a
    dict, or None), ``runners_up`` and ``front`` (the Pareto front of price per hour
    against latency) as DataFrames, ``skipped`` (a DataFrame of the deployments left out
    because their settings do not build: ``label``, ``field``, the setting at fault, and
    ``reason``), ``target_rps``, and ``raw``, the dict ``llmsim plan --json`` prints."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.target_rps = raw["target_rps"]
        self.points = pd.DataFrame(raw["points"])
        i = raw["cheapest"]
        self.cheapest = None if i is None else dict(raw["points"][i])
        self.runners_up = self.points.iloc[raw["runners_up"]].reset_index(drop=True)
        self.front = self.points.iloc[raw["front"]].reset_index(drop=True)
        self.skipped = pd.DataFrame(raw["skipped"], columns=["label", "field", "reason"])

    def __repr__(self) -> str:
        best = self.cheapest["label"] if self.cheapest else "none"
        return (f"<llmsim.PlanResult {len(self.points)} deployments at "
                f"{self.target_rps:.4g} req/s: cheapest {best}, front of {len(self.front)}, "
                f"{len(self.skipped)} skipped>")

    def to_json(self) -> str:
        """The answer as ``llmsim plan --json`` prints it (compact)."""
        return json.dumps(self.raw)


#: ``plan``'s keywords that go to the objectives, the space and the search.
_SLO_KEYS = ("slo", "attainment", "allow_growth")
_SPACE_KEYS = ("gpu_types", "schedulers", "gpu_counts", "routers", "ks", "max_decode_batches",
               "max_seqs_values", "token_budgets", "preemptions", "splits")
_SEARCH_KEYS = ("target_rate", "reps", "rel_tol", "max_evals", "runners_up")


def _plan_json(config, settings: dict) -> str:
    plan: dict = {}
    slo: dict = {}
    space: dict = {}
    for key in list(settings):
        if key in _SEARCH_KEYS:
            plan[key] = settings.pop(key)
        elif key in _SPACE_KEYS:
            value = settings.pop(key)
            if key == "splits":
                value = [list(map(int, s.split(":"))) if isinstance(s, str) else list(s)
                         for s in value]
            space[key] = list(value)
        elif key in _SLO_KEYS:
            value = settings.pop(key)
            if key == "slo":
                slo["bounds"] = [value] if isinstance(value, (str, Mapping)) else list(value)
            elif key == "allow_growth":
                slo["stable"] = not value
            else:
                slo[key] = value
    plan["base"] = dict(_config(config, settings))
    plan["slo"] = slo
    plan["space"] = space
    return json.dumps(plan)


def plan(config: Union[Config, Mapping[str, Any], None] = None, *, executor: str = "local",
         ray_address: Optional[str] = None, **settings: Any) -> PlanResult:
    """Finds the cheapest deployment meeting latency objectives, as ``llmsim plan``.

    The workload and fixed settings are a :class:`Config` or ``llmsim run``'s settings as
    keywords. The other keywords are ``llmsim plan``'s flags with ``_`` for ``-``:
    objectives ``slo`` (a list of ``"METRIC:pQ:SECONDS"`` such as ``"ttft:p99:1"``, or
    dicts ``{"metric", "percentile", "max_s"}``), ``attainment`` (fraction of requests
    meeting all of them), ``allow_growth``; the space ``gpu_types``
    (``"NAME=COST@USD_PER_GPU_HOUR"`` or dicts ``{"name", "cost", "gpu", "usd_per_hour"}``),
    ``schedulers``, ``gpu_counts``, ``routers``, ``ks``, ``max_decode_batches``,
    ``max_seqs_values``, ``token_budgets``, ``preemptions``, ``splits`` (``"P:D"``); and
    ``target_rate`` (requests/s), ``reps``, ``rel_tol``, ``max_evals``, ``runners_up``.

    ``executor="local"`` runs here (in Rust, the GIL released; Ctrl-C stops between
    chunks); ``executor="ray"`` sends each family of deployments (those differing only in
    GPU count) to a Ray task on the cluster at ``ray_address`` (None: a running or new
    local one), each calling the same Rust search, so the answer is exactly the local one.
    Workers need this package installed and the files the config names at the same paths.
    Raises ``ValueError`` naming a bad setting before anything runs.
    """
    text = _plan_json(config, dict(settings))
    try:
        families, notes = _llmsim.plan_families(text)
    except ValueError as e:
        # The objectives' bounds are the ``slo`` keyword here.
        message = str(e)
        if message.startswith("bounds:"):
            raise ValueError("slo:" + message[len("bounds:"):]) from None
        raise
    _warn(notes)
    if executor == "local":
        return PlanResult(json.loads(_llmsim.plan_run(text)))
    if executor == "ray":
        from .ray_plan import run_on_ray
        return PlanResult(json.loads(run_on_ray(text, families, ray_address)))
    raise ValueError(f"executor: must be 'local' or 'ray' (got {executor!r})")
