"""Text queries on a trained run, measured against ground truth on the held-out views.

For each object class of the scene (and a synonym of each), select Gaussians with p(query | x) > 0.5
(Eq. 5 against canonical phrases and the other class names), render the selection from every test view,
and compare the covered pixels (coverage > 0.5) with the class's ground-truth mask: IoU, recall,
precision. Usage: ``python benchmarks/bench_queries.py RUN_DIR [--data SCENE]``.
"""

from __future__ import annotations

import argparse
import json


from dff_gs import query as Q
from dff_gs.data import load_scene
from dff_gs.engine.runs import load_model, teacher_from_meta

SYNONYMS = {"sofa": "couch", "table": "dining table", "chair": "seat", "lamp": "floor lamp",
            "plant": "potted plant", "vase": "flower vase", "ball": "beach ball"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args()
    model, meta = load_model(args.run)
    teacher = teacher_from_meta(meta)
    scene = load_scene(args.data or meta["scene"]).split("test")
    names = scene.class_names
    rows = []
    for cls, syn in SYNONYMS.items():
        if cls not in names:
            continue
        k = names.index(cls)
        gt = scene.semantics == k
        for text in (cls, syn):
            negs = Q.text_negatives(teacher.encode_text, text, names)
            sel = Q.select(Q.text_probabilities(model, teacher.encode_text, text, negs))
            cover = Q.render_selection(model, scene.cameras, sel.mask) > 0.5
            inter, union = (cover & gt).sum().item(), (cover | gt).sum().item()
            rows.append({"class": cls, "query": text, "selected": sel.count, "iou": inter / max(union, 1),
                         "recall": inter / max(gt.sum().item(), 1), "precision": inter / max(cover.sum().item(), 1)})
    print("| class | query | #Gaussians | IoU | recall | precision |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['class']} | {r['query']} | {r['selected']} | {r['iou']:.3f} | {r['recall']:.3f} | "
              f"{r['precision']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
