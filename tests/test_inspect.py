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


def test_cli_advice_is_for_the_command_line(class_folder, capsys):
    from graphzoo.cli import main

    (class_folder / "test" / "cat" / "fake.png").write_bytes(b"this is text, not a png")
    assert main(["data", "inspect", str(class_folder)]) == 2
    err = capsys.readouterr().err
    assert "fake.png" in err and "--skip-corrupt" in err and "skip_corrupt=True" not in err
    assert main(["data", "inspect", str(class_folder), "--skip-corrupt"]) == 0
    assert main(["data", "inspect", str(class_folder), "-o", "skip_corrupt=True"]) == 0  # was a TypeError
    capsys.readouterr()
    assert main(["data", "inspect", str(class_folder / "test" / "cat" / "fake.png")]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "format=" not in err


def test_cli_inspect_all_corrupt_fails(tmp_path, capsys):
    from graphzoo.cli import main

    for name in ("a", "b"):
        (tmp_path / "set" / "cls").mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / "cls" / f"{name}.png").write_bytes(b"not a png")
    assert main(["data", "inspect", str(tmp_path / "set"), "--skip-corrupt"]) == 2  # was 0 with "images 0"
    assert "none of the 2 files could be decoded" in capsys.readouterr().err


def test_cli_inspect_patient_advice(tmp_path, capsys):
    import numpy as np

    from graphzoo.cli import main

    f = tmp_path / "set.npz"
    np.savez(f, images=np.zeros((8, 4, 4), np.uint8), labels=np.array([0, 1] * 4), class_names=np.array(["a", "b"]),
             split=np.array(["train"] * 4 + ["test"] * 4), patient_ids=np.array(["p1", "p2"] * 4))
    assert main(["data", "inspect", str(f)]) == 0
    out = capsys.readouterr().out
    assert "2 patients appear in more than one split" in out and "--set split=patient" in out
    assert "graphzoo.data.patient_split" not in out


def test_cli_missing_images_advice(tmp_path, capsys):
    import numpy as np
    from conftest import write_png

    from graphzoo.cli import main

    rows = "".join(f"0000000{i}_000.png,No Finding,{i}\n" for i in range(1, 5))
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n" + rows)
    write_png(tmp_path / "images" / "00000001_000.png", np.zeros((4, 4), np.uint8))
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert "rerun with -o allow_missing=True" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path), "-o", "allow_missing=True"]) == 0
