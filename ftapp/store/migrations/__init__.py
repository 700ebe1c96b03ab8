"""Schema changes, in order. Append-only: never edit a migration that has landed; add a new one,
with a comment saying why, in the module of its feature, and list it last in STEPS. Applied
once at start-up by `open_db`, in the order of STEPS (the numbers say it too)."""

from __future__ import annotations

from sqlite_utils.migrations import Migrations

from ftapp.store.migrations.arena import m005_arena, m014_reviewer_checks
from ftapp.store.migrations.data import m001_data_tables, m002_base_models, m010_preference_data
from ftapp.store.migrations.evaluation import (
    m007_evaluation_and_deployment,
    m012_eval_preference_pairs,
    m013_what_tuning_cost,
    m015_api_keys,
)
from ftapp.store.migrations.training import (
    m003_training,
    m004_job_waiting_reason,
    m009_export_jobs,
    m011_preference_metrics,
    m016_job_runs,
)
from ftapp.store.migrations.users import m006_users, m008_sign_in_sessions

STEPS = (
    m001_data_tables,
    m002_base_models,
    m003_training,
    m004_job_waiting_reason,
    m005_arena,
    m006_users,
    m007_evaluation_and_deployment,
    m008_sign_in_sessions,
    m009_export_jobs,
    m010_preference_data,
    m011_preference_metrics,
    m012_eval_preference_pairs,
    m013_what_tuning_cost,
    m014_reviewer_checks,
    m015_api_keys,
    m016_job_runs,
)

migrations = Migrations("ftapp")
for step in STEPS:
    migrations()(step)
