#!/usr/bin/env python3
"""Execute notebooks headlessly (nbclient) and fail if any cell fails or a notebook draws no figure.

    CKA_OUT=/path/to/outputs python3 Tests/Notebooks/execute_notebooks.py notebooks-export/*.ipynb [--write DIR]

Each notebook runs in its own folder (as Jupyter does) with a fresh python3 kernel that inherits the
environment (CKA_OUT). The committed notebooks are not modified; --write DIR saves the executed copies there.
Prints one line per notebook and a closing 'notebooks: N passed, N failed'; exit status 1 on any failure.
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

args = sys.argv[1:]
write_dir = None
if "--write" in args:
    i = args.index("--write")
    write_dir = args[i + 1]
    del args[i:i + 2]
if not args:
    sys.exit("usage: execute_notebooks.py NOTEBOOK.ipynb... [--write DIR]")

passed = failed = 0
for path in args:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    try:
        client.execute()
    except CellExecutionError as e:
        failed += 1
        print(f"FAIL {path}: a cell raised\n{str(e)[-3000:]}", flush=True)
        continue
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    errors = [o for o in outputs if o.get("output_type") == "error"]
    unexecuted = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count") is None]
    if errors or unexecuted or figures == 0:
        failed += 1
        print(f"FAIL {path}: {len(errors)} error outputs, {len(unexecuted)} cells not run, {figures} figures", flush=True)
        continue
    passed += 1
    print(f"ok   {path}: {len(nb.cells)} cells, {figures} figures, {time.time() - t0:.1f} s", flush=True)
    if write_dir:
        os.makedirs(write_dir, exist_ok=True)
        nbformat.write(nb, os.path.join(write_dir, os.path.basename(path)))

print(f"notebooks: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
