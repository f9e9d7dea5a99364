#!/usr/bin/env bash
# Run main_report.ipynb headless against the CSV files in DATA_DIR (written by
# `llmsim reproduce`, e.g. `--quick --out DATA_DIR`); fail if any cell raises, or if the
# committed notebook carries outputs. Nothing is written into the repository.
#
#   .ci/check_notebook.sh DATA_DIR
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DATA_DIR" >&2
    exit 2
fi
data=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
if [ ! -f "$data/data_scheduler_comparison.csv" ]; then
    echo "check_notebook: no llmsim data in $data (run llmsim reproduce --out $data)" >&2
    exit 1
fi

# The committed notebook must have its outputs cleared.
python3 - <<'PY'
import sys
import nbformat

nb = nbformat.read("main_report.ipynb", as_version=4)
nbformat.validate(nb)
dirty = [i for i, c in enumerate(nb.cells)
         if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
if dirty:
    sys.exit(f"check_notebook: main_report.ipynb has outputs in code cells {dirty}; "
             "clear them before committing (jupyter nbconvert --clear-output --inplace main_report.ipynb)")
PY

# The notebook's live sweep needs the Python package, installed as the README says.
python3 -m pip install --quiet --disable-pip-version-check ./python

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Executed from the repository root (the notebook's directory), which is what the notebook
# expects; the executed copy goes to a temporary directory. nbconvert exits non-zero when a
# cell raises.
LLMSIM_DATA="$data" MPLBACKEND=Agg \
    jupyter nbconvert --to notebook --execute main_report.ipynb \
    --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 \
    --output-dir "$out" --output executed.ipynb
python3 - "$out/executed.ipynb" <<'PY'
import sys
import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
if errors:
    sys.exit(f"check_notebook: {len(errors)} cell(s) raised")
if images < 9:
    sys.exit(f"check_notebook: expected at least 9 figures, got {images}")
print(f"check_notebook: main_report.ipynb ran clean ({images} figures)")
PY
