"""Saving and loading fitted models: JSON metadata plus the posterior as NetCDF (ArviZ) for Bayesian fits.

`models/<name>/<run_id>/model.json` holds the type, schema version, the models' names and parameters (with
standard errors or posterior summaries; a model with covariates also its coefficients, their standard errors and
the covariates' encoding), the resolved config and its hash, a fingerprint of the training data,
the package versions, the SHA-256 of every file beside it, and a content hash of itself. Loading checks all of
it and refuses a file that was edited, truncated or written by another schema. No pickle: nothing in a model
file can run code. `models/<name>/latest` names the newest run; earlier runs are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clv.bayes.posterior import CustomerLayout, Diagnostics, Posterior
from clv.covariates import CovariateSet
from clv.errors import ClvError, ModelFileError
from clv.model import FitResult
from clv.purchase import PURCHASE_MODELS, PurchaseModel
from clv.spend.gamma_gamma import GammaGammaModel

__all__ = [
    "FINGERPRINT_COLUMNS",
    "SCHEMA_VERSION",
    "ExtraTable",
    "FittedModels",
    "data_fingerprint",
    "fingerprint_from_parts",
    "fingerprint_part",
    "load_models",
    "point_models_from_json",
    "point_models_json",
    "save_models",
    "staged_models",
]

#: a table saved beside the model: a frame, or a function that writes the Parquet file at the path it is given
ExtraTable = pd.DataFrame | Callable[[Path], None]

#: 2: a model block may carry covariates (coefficients, their standard errors, the encoding)
SCHEMA_VERSION = 2
#: the schema versions this clv reads (a version 1 file is a model without covariates)
READABLE_SCHEMA_VERSIONS = (1, 2)
MODEL_TYPE = "clv.fitted_models"
LATEST = "latest"
#: the hidden folder a run is written into before it is renamed into place
STAGING_PREFIX = ".saving."


@dataclass
class FittedModels:
    """What a saved run holds: the fitted models (point estimates), posteriors for Bayesian fits, metadata."""

    purchase: PurchaseModel
    spend: GammaGammaModel | None
    method: str
    purchase_posterior: Posterior | None
    spend_posterior: Posterior | None
    metadata: dict[str, Any]
    path: Path | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


#: the RFM columns a fingerprint reads
FINGERPRINT_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
#: the keys of the fingerprint's two 64-bit row hashes (`pd.util.hash_pandas_object`, 16 characters each)
_HASH_KEYS = ("clv-fingerprint1", "clv-fingerprint2")


def fingerprint_part(rfm: pd.DataFrame) -> str:
    """A part of `data_fingerprint` (any split of the rows into parts gives the same fingerprint): its row
    count, each row hash added up modulo 2^64, and the columns' sums, as JSON."""
    columns = [c for c in FINGERPRINT_COLUMNS if c in rfm]
    table = rfm[columns].copy()
    for column in columns:
        table[column] = table[column].astype(str) if column == "customer_id" else table[column].astype(float)
    lanes = [int(pd.util.hash_pandas_object(table, index=False, hash_key=key).to_numpy().sum()) for key in _HASH_KEYS]
    sums = {c: float(table[c].sum()) for c in columns if c != "customer_id"}
    return json.dumps({"customers": len(table), "columns": columns, "lanes": lanes, "sums": sums})


def fingerprint_from_parts(parts: list[str]) -> dict[str, Any]:
    """`data_fingerprint` from `fingerprint_part` of each part of the rows."""
    found = [json.loads(p) for p in parts]
    columns = found[0]["columns"] if found else []
    lanes = [sum(f["lanes"][k] for f in found) % 2**64 for k in range(len(_HASH_KEYS))]
    out: dict[str, Any] = {
        "customers": sum(f["customers"] for f in found),
        "row_hash": "".join(f"{lane:016x}" for lane in lanes),
    }
    for column in columns[1:] if columns[:1] == ["customer_id"] else columns:
        out[f"sum_{column}"] = float(sum(f["sums"][column] for f in found))
    return out


def data_fingerprint(rfm: pd.DataFrame) -> dict[str, Any]:
    """Counts, sums and a 128-bit hash of the RFM table the models were fitted on: the sum of each row's hash
    (customer id as text, numbers as floats) modulo 2^64 in two lanes, so customer order does not matter and
    the rows' parts on Spark give the same hash (`clv.spark.rows.SparkRows.fingerprint`; the sums may differ
    there in the last digit, being added in another order)."""
    return fingerprint_from_parts([fingerprint_part(rfm)])


def _model_block(model: PurchaseModel | GammaGammaModel, posterior: Posterior | None) -> dict[str, Any]:
    block = model.summary()
    block["model"] = model.name
    if posterior is not None:
        block["posterior"] = posterior.summary()
        block["posterior_file"] = f"{model.name}_posterior.nc"
    return block


def point_models_json(fitted: FittedModels) -> str:
    """The fitted point models as the JSON of their model.json blocks (no posterior): what a Spark job sends to
    its workers to score with the same models (`point_models_from_json`); floats round-trip exactly."""
    blocks = {"purchase_model": _model_block(fitted.purchase, None)}
    if fitted.spend is not None:
        blocks["spend_model"] = _model_block(fitted.spend, None)
    return json.dumps(blocks, default=_json_number)


def point_models_from_json(text: str) -> tuple[PurchaseModel, GammaGammaModel | None]:
    """The models of `point_models_json`, rebuilt and checked as `load_models` rebuilds saved ones."""
    blocks = json.loads(text)
    source = Path("<point models>")
    purchase = _restore(PURCHASE_MODELS[blocks["purchase_model"]["model"]], blocks["purchase_model"], source)
    spend = _restore(GammaGammaModel, blocks["spend_model"], source) if "spend_model" in blocks else None
    return purchase, spend


def _json_number(value: object) -> object:
    """numpy scalars in a model block, as Python numbers (exactly)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _new_run_id(root: Path) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id, k = stamp, 1
    while (root / run_id).exists():
        k += 1
        run_id = f"{stamp}-{k}"
    return run_id


def save_models(
    models_dir: str | Path,
    name: str,
    saved: FittedModels,
    config: dict[str, Any],
    config_hash: str,
    fingerprint: dict[str, Any],
    versions: dict[str, str],
    extra: dict[str, ExtraTable] | None = None,
) -> Path:
    """Write models/<name>/<run_id>/ whole and point `latest` at it (see `staged_models`); its path."""
    with staged_models(models_dir, name, saved, config, config_hash, fingerprint, versions, extra) as target:
        pass
    return target


@contextmanager
def staged_models(
    models_dir: str | Path,
    name: str,
    saved: FittedModels,
    config: dict[str, Any],
    config_hash: str,
    fingerprint: dict[str, Any],
    versions: dict[str, str],
    extra: dict[str, ExtraTable] | None = None,
) -> Iterator[Path]:
    """Write the run into a hidden staging folder of models/<name>/ and yield the path it will have; when the
    block ends without an error, rename it into place and point `latest` at it. On an error or an interrupt
    (in the block too) the staging folder is removed and `latest` is left as it was: a run that did not finish
    leaves no model folder that could be taken for a finished one. `extra` tables are saved beside the model
    as Parquet (a frame, or a writer called with the file's path), hashed like the posteriors."""
    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; a saved model is as readable as its folder
    try:
        record = {"config": config, "config_hash": config_hash, "data_fingerprint": fingerprint, "versions": versions}
        run_id = _new_run_id(root)
        _write_run(staging, run_id, name, saved, record, extra)
        target = root / run_id
        yield target
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    saved.path = target


def _write_run(
    staging: Path,
    run_id: str,
    name: str,
    saved: FittedModels,
    record: dict[str, Any],
    extra: dict[str, ExtraTable] | None,
) -> None:
    """The posteriors, the `extra` tables and model.json (written last, with `record`: config, its hash, data
    fingerprint, versions) in `staging`."""
    files: dict[str, str] = {}
    for posterior in (saved.purchase_posterior, saved.spend_posterior):
        if posterior is not None and posterior.idata is not None:
            file = f"{posterior.model_name}_posterior.nc"
            posterior.idata.to_netcdf(str(staging / file))
            files[file] = _sha256(staging / file)
    for file, table in (extra or {}).items():
        if isinstance(table, pd.DataFrame):
            table.to_parquet(staging / file, index=False)
        else:  # a writer of the file (on Spark: `clv.spark.score.tiers_file_writer`)
            table(staging / file)
        if not (staging / file).is_file():
            raise ModelFileError(f"{file} was not written to {staging}")
        files[file] = _sha256(staging / file)
    payload: dict[str, Any] = {
        "type": MODEL_TYPE,
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "name": name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "method": saved.method,
        "purchase_model": _model_block(saved.purchase, saved.purchase_posterior),
        "spend_model": None if saved.spend is None else _model_block(saved.spend, saved.spend_posterior),
        **record,
        "files": files,
    }
    payload["content_hash"] = hashlib.sha256(_canonical(payload)).hexdigest()
    (staging / "model.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _publish(staging: Path, target: Path) -> None:
    """Rename the finished run into place, then point `latest` at it (an atomic replace of the pointer file);
    if the pointer cannot be written, the run is taken back out, so the folder and `latest` agree."""
    staging.rename(target)
    try:
        pointer = target.parent / f".{LATEST}.tmp"
        pointer.write_text(target.name + "\n")
        pointer.replace(target.parent / LATEST)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def resolve_model_dir(path: str | Path) -> Path:
    """A run folder, or a models/<name> folder whose `latest` names one (or that `latest` file itself)."""
    folder = Path(path)
    if folder.name == LATEST and folder.is_file():
        folder = folder.parent  # models/<name>/latest: the pointer, which is what a person types
    if folder.name.startswith(STAGING_PREFIX):
        raise ModelFileError(
            f"{folder} is an unfinished save (a run that failed or was interrupted)",
            hint="pass a run folder (models/<name>/<run_id>) or models/<name> with latest",
        )
    if (folder / "model.json").is_file():
        return folder
    pointer = folder / LATEST
    if pointer.is_file():
        run = folder / pointer.read_text().strip()
        if (run / "model.json").is_file():
            return run
        raise ModelFileError(f"{pointer} names {run.name}, which has no model.json")
    raise ModelFileError(
        f"no saved model at {folder}", hint="pass a run folder (models/<name>/<run_id>) or models/<name> with latest"
    )


def load_models(path: str | Path) -> FittedModels:
    """Load and check a saved run: schema, content hash, file hashes, model names and parameters."""
    folder = resolve_model_dir(path)
    file = folder / "model.json"
    try:
        payload = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{file}: not a readable model file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("type") != MODEL_TYPE:
        raise ModelFileError(f"{file}: not a clv model file")
    if payload.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise ModelFileError(
            f"{file}: schema version {payload.get('schema_version')!r}; this clv reads versions {readable}",
            hint="refit with `clv train`",
        )
    claimed = payload.pop("content_hash", None)
    if claimed != hashlib.sha256(_canonical(payload)).hexdigest():
        raise ModelFileError(f"{file}: content hash mismatch: the file was modified after it was written")
    payload["content_hash"] = claimed
    for name, digest in payload.get("files", {}).items():
        if not (folder / name).is_file() or _sha256(folder / name) != digest:
            raise ModelFileError(f"{folder / name}: missing or modified (its SHA-256 does not match model.json)")
    purchase_block = payload["purchase_model"]
    if purchase_block.get("model") not in PURCHASE_MODELS:
        raise ModelFileError(f"{file}: unknown purchase model {purchase_block.get('model')!r}")
    purchase = _restore(PURCHASE_MODELS[purchase_block["model"]], purchase_block, file)
    spend_block = payload.get("spend_model")
    spend = _restore(GammaGammaModel, spend_block, file) if spend_block else None
    return FittedModels(
        purchase=purchase,
        spend=spend,
        method=payload["method"],
        purchase_posterior=_posterior(folder, purchase_block),
        spend_posterior=_posterior(folder, spend_block) if spend_block else None,
        metadata=payload,
        path=folder,
    )


def _restore(cls: Any, block: dict[str, Any], file: Path) -> Any:
    """The saved model, built from its saved fit result (parameters checked; with covariates, their
    coefficients, standard errors and encoding, checked to name the same design columns)."""
    try:
        covariates = _covariates(block)
        result = FitResult(
            params=block["params"],
            standard_errors=block.get("standard_errors"),
            log_likelihood=block.get("log_likelihood"),
            converged=block.get("converged"),
            gradient_norm=block.get("gradient_norm"),
            n_customers=block.get("n_customers"),
            not_identified=dict(block.get("not_identified") or {}),
            coefficients=_coefficients(block.get("coefficients"), covariates),
            coefficient_standard_errors=block.get("coefficient_standard_errors") if covariates else None,
            covariates=covariates,
        )
        return cls.from_result(result)
    except (ClvError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"{file}: the {cls.name} parameters are not valid: {exc}") from None


def _covariates(block: dict[str, Any]) -> CovariateSet | None:
    saved = block.get("covariates")
    return None if not saved else CovariateSet.from_dict(saved)


def _coefficients(saved: Any, covariates: CovariateSet | None) -> dict[str, dict[str, float]]:
    """The saved coefficients by process, as finite floats, naming exactly the encoding's design columns."""
    if covariates is None:
        if saved:
            raise ValueError("coefficients without the covariates' encoding")
        return {}
    out: dict[str, dict[str, float]] = {}
    for process in covariates.processes:
        values = dict(saved[process])
        names = covariates.design_names(process)
        if list(values) != names or not all(math.isfinite(float(v)) for v in values.values()):
            raise ValueError(f"the {process} coefficients must be finite numbers for {', '.join(names)}")
        out[process] = {n: float(values[n]) for n in names}
    return out


def _posterior(folder: Path, block: dict[str, Any]) -> Posterior | None:
    file = block.get("posterior_file")
    if not file:
        return None
    summary = block["posterior"]
    import arviz as az  # only for Bayesian models: the maximum-likelihood path does not pay its import

    idata: Any = az.from_netcdf(str(folder / file))  # type: ignore[no-untyped-call]
    names = tuple(summary["posterior"].keys())
    stacked = idata.posterior.stack(sample=("chain", "draw"))
    draws = np.column_stack([np.asarray(stacked[n].values, dtype=float) for n in names])
    d = summary["diagnostics"]
    diagnostics = Diagnostics(**{k: v for k, v in d.items() if k != "passed"})
    return Posterior(
        model_name=summary["name"],
        param_names=names,
        draws=draws,
        diagnostics=diagnostics,
        priors=summary["priors"],
        idata=idata,
        mle=summary.get("maximum_likelihood"),
        layout=CustomerLayout.from_dict(summary["layout"]) if summary.get("layout") else None,
        pooling=summary.get("pooling"),
        held=summary.get("held"),
    )
