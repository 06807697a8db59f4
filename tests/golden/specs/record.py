"""How the golden normalised specs here were recorded: each spec of inputs.yaml through ``load_spec`` as it
was before the spec was a typed value (commit d7e4689), written as ``request.json`` writes it.

    .venv/bin/python tests/golden/specs/record.py
"""
import json
import pathlib
import sys

import yaml

sys.path.insert(0, ".")
from dmscontract.spec import load_spec  # noqa: E402

here = pathlib.Path(__file__).parent
for name, document in yaml.safe_load((here / "inputs.yaml").read_text()).items():
    (here / f"{name}.json").write_text(json.dumps(load_spec(document), indent=2, sort_keys=False) + "\n")
