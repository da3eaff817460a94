"""Exports: COCO JSON that pycocotools loads and evaluates, and prelabel JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from common.contracts import PredictedAnnotation
from common.testing.waits import wait_until
from tests.integration.annotation.conftest import (
    AnnotationService,
    boxes,
    item_created,
    prediction,
)

TRIANGLE = [[10.0, 10.0], [50.0, 10.0], [10.0, 40.0]]


async def test_task_export_loads_in_pycocotools_and_matches_itself(
    annotation_service: AnnotationService, tmp_path: Path
) -> None:
    svc = annotation_service
    task = await svc.http.post(
        "/tasks", json={"name": "t", "dataset_id": svc.ds1, "auto_add": True}, headers=svc.auth()
    )
    task_id = task.json()["id"]
    await svc.publish(item_created(svc.project_id, svc.ds1, "it_1", "a.png", 64, 48))
    await svc.publish(item_created(svc.project_id, svc.ds1, "it_2", "b.png", 80, 60))
    await svc.publish(prediction(svc.project_id, svc.ds1, "it_1", boxes(3, "cat")))
    await svc.publish(
        prediction(
            svc.project_id,
            svc.ds1,
            "it_2",
            [
                *boxes(1, "dog", offset=20),
                PredictedAnnotation(
                    type="polygon", label="leaf", coordinates=TRIANGLE, confidence=0.8
                ),
                PredictedAnnotation(type="classification", label="outdoor", confidence=0.9),
            ],
        )
    )

    async def ready() -> bool:
        annotations = await svc.count("SELECT count(*) FROM annotations")
        sized = await svc.count("SELECT count(*) FROM items WHERE width IS NOT NULL")
        items = await svc.count("SELECT count(*) FROM task_items")
        return (annotations, sized, items) == (6, 2, 2)

    await wait_until(ready, message="items and predictions stored")

    response = await svc.http.get(f"/tasks/{task_id}/export", headers=svc.auth())
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))

    coco = COCO(str(path))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["cat", "dog", "leaf"]
    images = {i["file_name"]: i for i in coco.loadImgs(coco.getImgIds())}
    assert {(n, i["width"], i["height"]) for n, i in images.items()} == {
        ("/a.png", 64, 48),
        ("/b.png", 80, 60),
    }
    assert len(coco.getAnnIds(imgIds=[images["/a.png"]["id"]])) == 3
    assert document["info"]["prelabel_skipped"] == {"classification": 1}
    (leaf,) = coco.loadAnns(coco.getAnnIds(catIds=coco.getCatIds(catNms=["leaf"])))
    assert leaf["bbox"] == [10.0, 10.0, 40.0, 30.0]
    assert leaf["area"] == 600.0
    mask = coco.annToMask(leaf)
    assert mask.shape == (60, 80)
    assert abs(int(np.sum(mask)) - 600) < 60  # rasterised triangle

    # The export evaluated against itself as detections scores a perfect AP.
    detections = coco.loadRes(
        [
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": a["bbox"],
                "score": a["score"],
            }
            for a in document["annotations"]
        ]
    )
    evaluation = COCOeval(coco, detections, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] > 0.99

    lines = await svc.http.get(
        f"/tasks/{task_id}/export", params={"format": "jsonl"}, headers=svc.auth()
    )
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in lines.text.splitlines()]
    assert len(rows) == 6
    assert {r["type"] for r in rows} == {"box", "polygon", "classification"}
    assert all(r["model"]["name"] == "detector" and r["source"] == "model" for r in rows)


async def test_dataset_export_follows_human_edits_and_deletions(
    annotation_service: AnnotationService, tmp_path: Path
) -> None:
    svc = annotation_service
    await svc.publish(item_created(svc.project_id, svc.ds1, "it_1", "a.png", 32, 32))
    await svc.publish(prediction(svc.project_id, svc.ds1, "it_1", boxes(2, "cat")))

    async def stored() -> list[dict[str, Any]]:
        listed = await svc.http.get(
            "/annotations", params={"dataset_id": svc.ds1}, headers=svc.auth()
        )
        result: list[dict[str, Any]] = listed.json()
        return result if len(result) == 2 else []

    first, second = await wait_until(stored, message="prediction stored")
    await svc.http.patch(f"/annotations/{first['id']}", json={"label": "lynx"}, headers=svc.auth())
    await svc.http.delete(f"/annotations/{second['id']}", headers=svc.auth())

    document = (await svc.http.get(f"/datasets/{svc.ds1}/export", headers=svc.auth())).json()
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    coco = COCO(str(path))

    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["lynx"]
    assert len(coco.getAnnIds()) == 1
    other = await svc.http.get(f"/datasets/{svc.ds1}/export", headers=svc.auth("wrong-key"))
    assert other.status_code == 401
