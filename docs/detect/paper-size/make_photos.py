"""A tiny COCO folder of real photos for the paper-size check of `cae-bench detect`.

Photos shipped with scikit-learn (china.jpg, flower.jpg: CC-BY 2.0) and scikit-image (coffee,
chelsea, rocket, motorcycle_left: CC0 / public domain per skimage/data/_fetchers.py). The boxes
are rough hand-placed rectangles (polygon = the box): the check measures memory and that two
training iterations and the test pass finish at COCO sizes, not accuracy.

usage: python make_photos.py OUT
"""
import json
import os
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_image
import skimage.data as sd

out = sys.argv[1]
photos = {
    "china.jpg": (load_sample_image("china.jpg"), [[80, 20, 300, 260], [300, 150, 330, 250]]),
    "flower.jpg": (load_sample_image("flower.jpg"), [[170, 40, 300, 380]]),
    "coffee.png": (sd.coffee(), [[150, 30, 450, 300]]),
    "chelsea.png": (sd.chelsea(), [[40, 20, 420, 300]]),
    "rocket.png": (sd.rocket(), [[250, 40, 350, 420]]),
    "motorcycle.png": (sd.stereo_motorcycle()[0], [[100, 100, 700, 480]]),
}
splits = {"train2017": ["china.jpg", "coffee.png", "chelsea.png", "motorcycle.png"],
          "val2017": ["flower.jpg", "rocket.png"]}
cats = [{"id": 1, "name": "object"}, {"id": 2, "name": "animal"}]
os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
ann_id = 1
for split, names in splits.items():
    os.makedirs(os.path.join(out, split), exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(names, start=1):
        arr, boxes = photos[name]
        arr = np.asarray(arr)[..., :3].astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(out, split, name.replace(".jpg", ".png")))
        h, w = arr.shape[:2]
        images.append({"id": i, "file_name": name.replace(".jpg", ".png"), "width": w, "height": h})
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            x2, y2 = min(x2, w - 1), min(y2, h - 1)
            anns.append({"id": ann_id, "image_id": i, "category_id": 1 + (k + i) % 2,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1)),
                         "iscrowd": 0, "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
            ann_id += 1
    with open(os.path.join(out, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    print(split, [(im["file_name"], im["width"], im["height"]) for im in images])
