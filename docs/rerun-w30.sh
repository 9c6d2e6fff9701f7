#!/bin/bash
# W3.0's re-measurement, in order: the quickstart (its encoders feed the next two), segmentation
# on the world with stuff classes, detection. Each step's log goes beside its script.
set -e
mkdir -p /work/runs/w30
D=/work/main/docs
bash $D/quickstart/run.sh > /work/runs/w30/quickstart.log 2>&1
bash $D/segment/stuff/run.sh > /work/runs/w30/stuff.log 2>&1
bash $D/detect/run.sh > /work/runs/w30/detect.log 2>&1
