"""The modeller's side: submit runs, watch them, fetch results (CLI and Python API)."""
