"""`model.purchase: auto`: the purchase model chosen by its rolling-origin holdout error.

Every candidate of `evaluation.models` is fitted on each rolling origin's calibration and scored on that
origin's holdout (the machinery of `clv evaluate`: `clv.evaluate.job`, `clv.evaluate.rolling`), and the one with
the best mean of `evaluation.rank_by` over the origins is chosen (Tashman 2000: fixed horizon, moving origin).
Ties (equal means) go to the candidate listed first in `evaluation.models`. Without configured origins the
choice uses `DEFAULT_ORIGINS` calibration ends, one month apart, back from time.calibration_end.

The candidates are fitted by maximum likelihood whatever `model.method` is (a Bayesian fit of every candidate at
every origin would cost many samplings; the chosen model is then fitted by the configured method). The origins'
holdouts end by time.holdout_end, so the choice has seen the run's holdout: the run's holdout figures are then
not an independent check of the chosen model.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clv.config import RunConfig
from clv.errors import ConfigError, DataError
from clv.evaluate.comparison import TIE_MARGIN, Candidate, CandidateResult
from clv.evaluate.rolling import rolling_origins
from clv.metric_registry import RANK_CRITERIA

__all__ = ["AUTO", "DEFAULT_ORIGINS", "ModelChoice", "choice_origins", "choose_purchase_model", "resolved_config"]

#: the `model.purchase` value that asks for the choice
AUTO = "auto"

#: rolling origins used when the config names none (evaluation.origins / evaluation.rolling), a month apart
DEFAULT_ORIGINS = 3

#: the method the candidates are fitted by when choosing
CHOICE_METHOD = "mle"


@dataclass(frozen=True)
class ModelChoice:
    """The choice: the chosen purchase model, the criterion, the origins, and every candidate's per-origin and
    mean scores (candidates in `evaluation.models` order), the reason in words and notes on how it was made."""

    chosen: str
    criterion: str
    higher_is_better: bool
    origins: tuple[dt.date, ...]
    scores: dict[str, tuple[float | None, ...]]
    means: dict[str, float | None]
    reason: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """summary.json's `model_choice` block."""
        return {
            "requested": AUTO,
            "chosen": self.chosen,
            "criterion": self.criterion,
            "higher_is_better": self.higher_is_better,
            "method": CHOICE_METHOD,
            "origins": [o.isoformat() for o in self.origins],
            "candidates": [
                {"purchase": name, "per_origin": list(self.scores[name]), "mean": self.means[name]}
                for name in self.scores
            ],
            "reason": self.reason,
            "notes": list(self.notes),
            "tie_rule": "equal means: the candidate listed first in evaluation.models",
        }


def _check_candidates(config: RunConfig) -> list[str]:
    from clv.purchase import PURCHASE_MODELS  # the models import the data layer, which imports the config

    models: list[str] = list(config.evaluation.models)
    unknown = [m for m in models if m not in PURCHASE_MODELS]
    if unknown:
        raise ConfigError(
            f"model.purchase auto: evaluation.models names {', '.join(unknown)}, not a purchase model",
            hint=f"choose among {', '.join(PURCHASE_MODELS)}",
        )
    if len(models) < 2:
        raise ConfigError(
            f"model.purchase auto chooses among evaluation.models, which lists {len(models)} model(s)",
            hint="list two or more, e.g. --set 'evaluation.models=[bgnbd,pareto_nbd,mbgnbd]', or name the model",
        )
    return models


def choice_origins(config: RunConfig) -> tuple[RunConfig, list[dt.date], list[str]]:
    """The config the origins are made from (with `DEFAULT_ORIGINS` monthly origins when it names none), the
    origins, and a note when the default was used."""
    if config.time.holdout_end is None:
        raise ConfigError(
            "model.purchase auto chooses by the error on rolling-origin holdouts: it needs time.holdout_end (each "
            "origin's holdout has the length time.holdout_end - time.calibration_end and ends by it)",
            hint="set time.holdout_end after time.calibration_end, or name the purchase model (model.purchase)",
        )
    notes = []
    ev = config.evaluation
    if not ev.origins and ev.rolling <= 1:
        ev = ev.model_copy(update={"rolling": DEFAULT_ORIGINS, "rolling_step_months": 1})
        config = config.model_copy(update={"evaluation": ev})
        notes.append(
            f"no rolling origins configured (evaluation.origins / evaluation.rolling): {DEFAULT_ORIGINS} origins a "
            "month apart, back from time.calibration_end"
        )
    return config, rolling_origins(config), notes


def _origin_data(config: RunConfig, origins: list[dt.date]) -> dict[dt.date, Any]:
    """The RFM summary at each origin (with its holdout), read once; a too-short data set is said."""
    from clv.evaluate.job import load_origins

    try:
        data, _, rolling = load_origins(config, origins)
    except DataError as exc:
        raise DataError(
            f"model.purchase auto: the data are too short for the rolling origins {', '.join(map(str, origins))} "
            f"({exc.message}); every origin needs customers who bought by it and a holdout after it",
            hint="set evaluation.origins to dates inside the data (with a holdout ending by time.holdout_end), "
            "or name the purchase model (model.purchase)",
        ) from None
    return {o: data.rfm if o == config.time.calibration_end else rolling[o] for o in origins}


def _score(result: CandidateResult, criterion: str) -> float:
    value = (result.fit | result.score.metrics).get(criterion)
    return math.nan if value is None else float(value)


def choose_purchase_model(
    config: RunConfig, progress: Callable[[str], None] | None = None, strict: bool = False
) -> ModelChoice:
    """Fit every candidate of `evaluation.models` (maximum likelihood, with the config's covariates when it has
    them) at every rolling origin, score its holdout by `evaluation.rank_by`, and choose the best mean."""
    from clv.evaluate.job import run_candidate

    models = _check_candidates(config)
    config, origins, notes = choice_origins(config)
    if config.model.method != CHOICE_METHOD:
        notes.append(
            f"candidates compared by maximum-likelihood fits; the chosen model is fitted by {config.model.method}"
        )
    criterion = config.evaluation.rank_by
    data = _origin_data(config, origins)
    scores: dict[str, list[float]] = {m: [] for m in models}
    for origin in origins:
        if progress is not None:
            progress(f"choose the purchase model: origin {origin}")
        for model in models:
            candidate = Candidate(model, CHOICE_METHOD, config.covariates is not None)
            scores[model].append(_score(run_candidate(config, candidate, data[origin], strict, False), criterion))
    return _decide({m: tuple(s) for m, s in scores.items()}, criterion, tuple(origins), notes)


def _decide(
    scores: dict[str, tuple[float, ...]], criterion: str, origins: tuple[dt.date, ...], notes: list[str]
) -> ModelChoice:
    """The best mean (ties: the first listed); a candidate lacking a score at an origin is not chosen."""
    higher = RANK_CRITERIA[criterion]
    means = {m: (math.nan if any(math.isnan(v) for v in s) else sum(s) / len(s)) for m, s in scores.items()}
    scored = [m for m in scores if not math.isnan(means[m])]
    if not scored:
        raise DataError(f"model.purchase auto: no candidate has a {criterion} at every origin to be chosen by")
    lacking = [m for m in scores if m not in scored]
    if lacking:
        notes.append(f"{', '.join(lacking)}: no {criterion} at some origin, not chosen")
    ranked = sorted(scored, key=lambda m: -means[m] if higher else means[m])  # stable: ties keep the list order
    best = ranked[0]
    reason = _reason(best, ranked, means, criterion, len(origins))
    return ModelChoice(
        best,
        criterion,
        higher,
        origins,
        {m: tuple(None if math.isnan(v) else v for v in s) for m, s in scores.items()},
        {m: None if math.isnan(v) else v for m, v in means.items()},
        reason,
        tuple(notes),
    )


def _criterion_words(criterion: str) -> str:
    return {"mae_purchases": "MAE", "rmse_purchases": "RMSE"}.get(criterion, criterion)


def _reason(best: str, ranked: list[str], means: dict[str, float], criterion: str, n: int) -> str:
    """'pareto_nbd: lowest mean MAE over 3 origins, 0.752 vs 0.761 mbgnbd' (more digits when three do not tell
    the two apart; 'practically tied' within `TIE_MARGIN` of the value)."""
    word = "highest" if RANK_CRITERIA[criterion] else "lowest"
    text = f"{best}: {word} mean {_criterion_words(criterion)} over {n} origin{'s' if n != 1 else ''}"
    if len(ranked) == 1:
        return f"{text}, {means[best]:.3f} (the only candidate scored)"
    runner = ranked[1]
    digits = 3
    while digits < 6 and f"{means[best]:.{digits}f}" == f"{means[runner]:.{digits}f}":
        digits += 1  # enough digits to tell the two apart
    text += f", {means[best]:.{digits}f} vs {means[runner]:.{digits}f} {runner}"
    if abs(means[runner] - means[best]) <= TIE_MARGIN * abs(means[best]):
        text += f" (practically tied: within {TIE_MARGIN:.1%})"
    return text


def resolved_config(config: RunConfig, choice: ModelChoice) -> RunConfig:
    """The run config with the chosen purchase model in place of `auto`."""
    return config.model_copy(update={"model": config.model.model_copy(update={"purchase": choice.chosen})})
