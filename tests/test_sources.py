"""What the workflow names as missing before it starts, for the sources people provide themselves: a label table
and a labelling tool's COCO export."""

from __future__ import annotations

from comcl.sources import needs


def test_a_coco_export_is_asked_for_with_the_tool_steps_until_both_files_are_there(tmp_path):
    source = {"format": "coco", "root": str(tmp_path), "train": "train.json", "test": str(tmp_path / "boxes" / "test.json")}
    found = needs(source)
    assert [(need.what, need.path, need.automatic) for need in found] == [
        ("COCO train boxes", tmp_path / "train.json", False),
        ("COCO test boxes", tmp_path / "boxes" / "test.json", False),
    ]
    assert "CVAT: Actions > Export dataset > COCO 1.0" in found[0].step and "Roboflow: Export > COCO JSON" in found[0].step
    assert found[1].step.endswith(f"put it at {tmp_path / 'boxes' / 'test.json'}")
    (tmp_path / "train.json").write_text("{}")
    assert [need.what for need in needs(source)] == ["COCO test boxes"]
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "test.json").write_text("{}")
    assert needs(source) == []


def test_a_label_table_is_asked_for_with_its_columns_until_it_is_there(tmp_path):
    source = {"format": "table", "root": str(tmp_path), "labels": "labels.csv", "task": "grading", "modality": "fundus"}
    (need,) = needs(source)
    assert need.path == tmp_path / "labels.csv" and not need.automatic
    assert "columns image" in need.step and "split" in need.step and "grade" in need.step
    chest = {"format": "table", "root": str(tmp_path), "labels": str(tmp_path / "own.csv"), "task": "multilabel"}
    chest["findings"] = ["Mass", "Nodule"]
    (need,) = needs(chest)
    assert need.path == tmp_path / "own.csv" and "Mass, Nodule" in need.step
    (tmp_path / "labels.csv").write_text("image,split,grade\n")
    assert needs(source) == []
