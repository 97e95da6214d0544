"""``mambah train --help`` lists, per model, the columns ``--data`` needs."""

from __future__ import annotations

import pytest

from mambah.cli import main
from sim.core.registry import trainers


def test_train_help_lists_the_columns_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "columns --data needs, per model" in text
    listed = " ".join(text.split("columns --data needs, per model", 1)[1].split())
    for kind, spec in trainers().items():
        assert spec.columns, kind
        assert f"{kind}: {' '.join(spec.columns)}" in listed, kind
    for column in ("track_class", "in_acceptance", "dp_rel", "n_pv", "RichDLLK"):
        assert column in listed
