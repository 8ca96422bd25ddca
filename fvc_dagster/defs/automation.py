"""When assets update themselves: the condition of the folds, the tabular models, the ensemble,
the evaluation and the champion."""

import dagster as dg

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
