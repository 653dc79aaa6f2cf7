"""graphzoo.data.inspect: ``graphzoo data inspect`` at the command line.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import pytest
from conftest import data_path

pytestmark = pytest.mark.usefixtures("private_cache")


def test_cli_data_inspect(class_folder, capsys):
    from graphzoo.cli import main

    assert main(["data", "inspect", str(class_folder)]) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "train" in out and "label budget" in out and "20%" in out
    assert main(["data", "inspect", str(class_folder / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "inspect", str(class_folder), "-o", "size=4"]) == 0
    assert "4x4 (all)" in capsys.readouterr().out


def test_cli_inspect_real_cbis_csvs(capsys):
    folder = data_path("cbis_ddsm", "raw_sample")
    from graphzoo.cli import main

    assert main(["data", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "only the CSVs were read" in out and "1457" in out  # malignant rows: 637+147+544+129
