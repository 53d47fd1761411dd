"""Strict pydantic schemas of the HTTP API (unknown fields, NaN and infinities are refused).

A point forecast request carries one shared ``init_time`` and, per location, the past
series ending at it (oldest first, ``null`` for a missing value), the known-future series
over the lead times when the model reads forecast forcing, and optionally static values
(looked up on the training domain otherwise). Values are in the model's units unless
``units`` names others (converted when convertible).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_LOCATIONS = 1024
MAX_STEPS = 8784  # a leap year of hourly values

VarName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")]
Series = Annotated[list[float | None], Field(min_length=1, max_length=MAX_STEPS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Location(_Strict):
    """One location's history."""

    station: Annotated[str, StringConstraints(pattern=r"^[\w.:@ -]{1,64}$")] | None = Field(
        None, description="Station id (matched against the training stations for statics)."
    )
    latitude: float = Field(ge=-90.0, le=90.0)
    longitude: float = Field(ge=-180.0, le=360.0)
    past: dict[VarName, Series] = Field(
        description="Past inputs (targets first): one series per variable, oldest first, "
        "the last value at init_time; null marks a missing value."
    )
    future: dict[VarName, Series] = Field(
        default_factory=dict,
        description="Known-future variables (forecast forcing) at leads 1..horizon.",
    )
    static: dict[VarName, float] = Field(
        default_factory=dict,
        description="Static inputs; looked up on the training domain when absent.",
    )


class ForecastRequest(_Strict):
    """``POST /v1/forecast`` body."""

    model: ModelName | None = Field(None, description="Model name; default: the first served.")
    init_time: datetime = Field(
        strict=False,  # JSON bodies reach pydantic as Python str
        description="Time of the last past value, ISO 8601 (UTC if no offset).",
    )
    locations: list[Location] = Field(min_length=1, max_length=MAX_LOCATIONS)
    units: dict[VarName, Annotated[str, StringConstraints(max_length=40)]] = Field(
        default_factory=dict, description="Units of variables not sent in the model's units."
    )
    max_missing: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Largest accepted fraction of missing values per "
        "variable (default: the server's setting).",
    )


class ExplainRequest(ForecastRequest):
    """``POST /v1/explain`` body: a forecast request plus what to explain."""

    method: Literal["ablation", "shap"] = Field(
        "ablation",
        description="'ablation': each (variable, lag) input set to its train mean in turn; "
        "'shap': SHAP permutation values against the same baseline (slower).",
    )
    variable: VarName | None = Field(None, description="Target explained (default: the first).")
    quantile: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Quantile level explained, any level of a quantile model (default: the "
        "median); must be omitted for point models.",
    )
    max_evals: int | None = Field(
        None, ge=3, le=20000, description="Model evaluations per location for 'shap'."
    )
    category_baseline: dict[VarName, str] | None = Field(
        None,
        description="Categorical inputs: the category (flag meaning) each one's baseline "
        "takes, e.g. {'wd': 'N'}; default all zeros, the missing-category state.",
    )


class LocationExplanation(BaseModel):
    """One location's attributions."""

    station: str
    latitude: float
    longitude: float
    attributions: list[list[list[float | None]]] = Field(
        description="[lead][input_variable][lag]: forecast change due to each input "
        "(null where the model has no such input)."
    )
    prediction: list[float | None] = Field(description="The explained forecast per lead.")
    baseline_prediction: list[float | None] | None = Field(
        None, description="The forecast with every input at its train mean (ablation)."
    )
    category_attributions: list[list[list[float | None]]] | None = Field(
        None,
        description="[lead][category][lag]: categorical inputs per category (the value of "
        "the variable, credited to the category the location had); null without them.",
    )


class ExplainResponse(BaseModel):
    """``POST /v1/explain`` answer."""

    model: str
    version: str | None = None
    method: str
    baseline: str
    target: str
    quantile: float | None = None
    units: str
    init_time: datetime
    lead_time_hours: list[float]
    input_variables: list[str]
    lags: list[int] = Field(
        description="Steps before the init time (0 = init); -k is the valid time of lead k."
    )
    categories: list[str] | None = Field(
        None,
        description="Categorical (CF flag) inputs' categories, '<variable>=<meaning>'; each "
        "variable's attribution in input_variables is the sum over its categories.",
    )
    explanations: list[LocationExplanation]


class LocationForecast(BaseModel):
    """One location's forecast."""

    station: str
    latitude: float
    longitude: float
    values: dict[str, list[float | None]] = Field(
        description="Point forecast per target over the lead times (the median for "
        "quantile models)."
    )
    quantiles: dict[str, dict[str, list[float | None]]] | None = Field(
        None, description="Per target, per quantile level, the forecast over the lead times."
    )
    valid: bool = Field(
        True,
        description="False when the location had more than max_missing of an input missing "
        "(or no real past value): its values are null, never a forecast from filled inputs.",
    )
    inputs_filled: int = Field(
        0, description="Missing input values filled with the training mean for this location."
    )


class ForecastResponse(BaseModel):
    """``POST /v1/forecast`` answer."""

    model: str
    version: str | None = None
    init_time: datetime
    lead_time_hours: list[float]
    valid_time: list[datetime]
    units: dict[str, str]
    forecasts: list[LocationForecast]
    inputs_filled: int = Field(0, description="Missing input values filled, all locations.")
    masked_locations: int = Field(0, description="Locations whose forecast is masked (null).")
    warnings: list[str] = Field(
        default_factory=list, description="Masked locations, input drift against training data."
    )


class ModelInfo(BaseModel):
    """A served model (``GET /v1/models``)."""

    name: str
    version: str | None = None
    path: str
    metadata: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: str = Field(description="Machine-readable kind, e.g. 'validation_error'.")
    message: str = Field(description="What is wrong and what was expected.")
    request_id: str | None = None
    detail: list[dict[str, Any]] | None = None
