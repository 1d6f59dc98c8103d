"""The report stage: results tables (summary.md/.csv, ablation tables) and figures."""
