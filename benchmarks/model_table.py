"""Print the markdown table of every registered model: parameters and GMACs at its default input.

    .venv/bin/python benchmarks/model_table.py > /tmp/models_table.md

The numbers come from the summary tool (``avlearn summary MODEL``), which counts on the meta device, so the
whole table takes seconds and allocates no weights' worth of compute.
"""

from __future__ import annotations

import sys

from avlearn.models import create_model, get_model_info, list_models
from avlearn.models.summary import format_size, summarize


def main() -> int:
    print("| model | default input | params | GMACs | what it is |")
    print("|---|---|---:|---:|---|")
    for name in list_models():
        info = get_model_info(name)
        summary = summarize(create_model(name), info.input_size, rf="off")
        params = summary.total_params
        params_text = f"{params / 1e6:.2f} M" if params >= 1e5 else f"{params / 1e3:.1f} k"
        gmacs = summary.total_gmacs
        gmacs_text = f"{gmacs:.2f}" if gmacs >= 0.1 else f"{gmacs:.4f}"
        print(f"| `{name}` | {format_size(info.input_size)} | {params_text} | {gmacs_text} | {info.doc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
