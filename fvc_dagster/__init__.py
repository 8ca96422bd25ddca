"""fvc-dagster: a Dagster asset platform for fake-video detection."""
