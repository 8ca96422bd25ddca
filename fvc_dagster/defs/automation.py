"""When assets update themselves: the condition of the folds, the tabular models, the ensemble,
the evaluation and the champion; how often the sensors look."""

import os

import dagster as dg


def sensor_interval(value: str | None) -> int:
    """Seconds between evaluations of the archive and automation sensors, from
    `FVC_SENSOR_INTERVAL_S` (unset: 30); at least 1."""
    if value is None or value == "":
        return 30
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FVC_SENSOR_INTERVAL_S must be a whole number of seconds, got {value!r}")
    return int(value)


SENSOR_INTERVAL_S = sensor_interval(os.environ.get("FVC_SENSOR_INTERVAL_S"))

# Runs when upstream data changes, without waiting for videos that failed ingestion. Unlike
# `eager()`, a materialization does not count as handling upstream changes: one that ran while
# its upstream was updated by another run (say folds re-assigned while a baseline was training on
# the old ones) is requested again once it ends. Updates made by a run that also targets the
# asset are ignored, as in `eager()`.
UPDATE_ON_NEW_DATA = (
    dg.AutomationCondition.in_latest_time_window()
    & (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since(
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("update_on_new_data")
